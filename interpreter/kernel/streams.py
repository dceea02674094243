"""The kernel's standard streams: sys.stdout/sys.stderr on channels, sys.stdin from the client.

Output: every write of sys.stdout and sys.stderr, from any thread, goes into
one ordered buffer (Output); runs of writes to the same stream are joined and
sent as one message. The buffer is cut into messages (deliver: the Reporter
numbers them and puts them in its outbox, status.py) when it grows past
FLUSH_CHARS, when someone flushes (the kernel does before every status), and
FLUSH_DELAY seconds after the first unsent write (a flusher thread that sleeps
while nothing is pending); then drain() sends the outbox, and waits while flow
control holds it back: so print() blocks on a stalled stream, and nothing
else does. A burst of a hundred thousand prints costs a few dozen messages,
and output between statuses still arrives promptly. Writes after the
connection is gone are dropped: they never block or raise.

Input: sys.stdin reads the lines of the stdin channel (StdinLines, which the
kernel's idle loop reads too) and tells the kernel when it waits (status
"input" or "debug") through a callback.
"""

import codecs
import io
import threading
from collections import deque

# Hand output to the channels once this many characters are pending: large
# enough to make few messages of a burst, small enough that a single message
# stays far below any message size limit and memory stays bounded.
FLUSH_CHARS = 256 * 1024
# Seconds the first unsent write waits for others to join it in one message.
FLUSH_DELAY = 0.005
# A single write longer than this is cut into messages of this size.
MAX_MESSAGE_CHARS = 1024 * 1024
# Characters of the current output line kept to report as an input prompt.
PROMPT_CHARS = 1000
# Seconds a blocking read of stdin waits per call. A SIGINT that lands just as
# the main thread starts to block in a lock is seen by Python only when the
# wait returns (CPython cannot check and block atomically): in slices, an
# interrupt of input() is late by at most this much instead of lost.
INPUT_WAIT_SLICE = 0.05


class Output:
    """The ordered output buffer shared by sys.stdout and sys.stderr.

    deliver(messages) takes a list of (channel index, text), the messages of
    one flush in write order; it is called with the buffer's lock held, so
    flushes keep their order. drain() (called without the lock) sends what
    was delivered, waiting while flow control holds it back. Messages are at
    most `max_chars` characters.
    The text since the last newline of channel `prompt_index` is kept as
    `line_tail` (what input() showed as its prompt).
    """

    def __init__(self, deliver, prompt_index, drain, delay=FLUSH_DELAY, after_timed_flush=None):
        self._deliver = deliver
        self._drain = drain
        self.max_chars = MAX_MESSAGE_CHARS
        self._urgent = False           # the flusher is to drain now, without FLUSH_DELAY
        self._after_timed_flush = after_timed_flush  # called by the flusher, lock not held
        self._prompt_index = prompt_index
        self._delay = delay
        self.lock = threading.RLock()  # reentrant: a signal handler may print
        # Written by OutputStream.write (lock held), the hot path:
        self.runs = []                 # [(channel index, [text, ...])] in write order
        self.last_index = None         # the channel of the last run
        self.last_parts = None         # the texts of the last run
        self.size = 0                  # characters pending
        self.due = False               # the flusher was woken for what is pending
        self._tail = ""
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._flusher = None

    def flush(self):
        """Hand everything pending to the channels (it is then queued on the connection).

        Waits while flow control holds earlier output back; call it without the lock.
        """
        with self.lock:
            self.flush_locked()
        self._drain()

    @property
    def line_tail(self):
        """The text sent on the prompt channel since its last newline (flushes first)."""
        with self.lock:
            self.flush_locked()
            return self._tail

    def end_line(self):
        """The user answered a prompt: what follows starts a new line, as after the
        answer's echo in a terminal (so the next prompt is not glued to this one)."""
        with self.lock:
            self.flush_locked()
            self._tail = ""

    def close(self):
        """Flush and stop the flusher thread; later writes are still sent at once."""
        with self.lock:
            self.flush_locked()
            self._delay = 0
        self._drain()
        self._closing.set()
        self._wake.set()

    def flush_locked(self):
        runs = self.runs
        if not runs:
            return
        self.runs, self.last_index, self.last_parts = [], None, None
        self.size = 0
        self.due = False
        messages, cut = [], self.max_chars
        for index, parts in runs:
            text = parts[0] if len(parts) == 1 else "".join(parts)
            if index == self._prompt_index:
                self._track_tail(text)
            if not text:
                continue   # a message is never empty (see Reporter.deliver's counts)
            if len(text) <= cut:
                messages.append((index, text))
            else:
                messages.extend((index, text[start:start + cut])
                                for start in range(0, len(text), cut))
        if messages:
            self._deliver(messages)

    def _track_tail(self, text):
        newline = text.rfind("\n")
        if newline >= 0:
            self._tail = text[newline + 1:][-PROMPT_CHARS:]
        else:
            self._tail = (self._tail + text)[-PROMPT_CHARS:]

    def drain(self):
        """Send what was delivered; waits while flow control holds it back (lock not held)."""
        self._drain()

    def kick(self):
        """Have the flusher drain what was delivered, now, without waiting here (lock held)."""
        self._urgent = True
        self._start_flusher()
        self._wake.set()

    def wake_flusher(self):
        """Have the flusher send what is pending in FLUSH_DELAY (lock held)."""
        self.due = True
        self._start_flusher()
        self._wake.set()

    def _start_flusher(self):
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._run_flusher, daemon=True,
                                             name="kernel-output-flusher")
            self._flusher.start()

    def _run_flusher(self):
        while not self._closing.is_set():
            self._wake.wait()
            if not self._urgent:
                self._closing.wait(self._delay)  # let the rest of a burst join in
            self._urgent = False
            self._wake.clear()
            try:
                self.flush()
                if self._after_timed_flush is not None:
                    self._after_timed_flush()
            except Exception:  # never let output kill the thread
                pass


class OutputStream(io.TextIOBase):
    """sys.stdout or sys.stderr of the kernel: text writes into the shared Output."""

    encoding = "utf-8"
    errors = "strict"
    newlines = None
    line_buffering = False
    mode = "w"

    def __init__(self, output, index, name, flush_channels=None):
        self._output = output
        self._lock = output.lock
        self._index = index
        self._name = name
        self._flush_channels = flush_channels
        self.buffer = _BufferWriter(self)

    @property
    def name(self):
        return self._name

    def write(self, s):
        # The hot path of print(): keep it short.
        if s.__class__ is not str and not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        out = self._output
        with self._lock:
            if out.last_index == self._index:
                out.last_parts.append(s)
            else:
                out.last_index = self._index
                out.last_parts = [s]
                out.runs.append((self._index, out.last_parts))
            out.size += len(s)
            if out.size < FLUSH_CHARS:
                if not out.due:
                    out.wake_flusher()
                return len(s)
            out.flush_locked()
        out.drain()   # outside the lock: a stalled stream blocks this writer only
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        """Send what was written, and wait until it is handed to the operating system."""
        self._output.flush()
        if self._flush_channels is not None:
            self._flush_channels(self._index)

    def writable(self):
        return True

    def isatty(self):
        return False

    def close(self):
        """The kernel's streams stay open: closing them would silence every later traceback."""

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, self._name)


class _BufferWriter(io.RawIOBase):
    """stream.buffer: bytes written here are decoded as UTF-8 and written as text."""

    def __init__(self, stream):
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data):
        text = self._decoder.decode(bytes(data))
        if text:
            self._stream.write(text)
        return len(data)

    def writable(self):
        return True

    def flush(self):
        self._stream.flush()

    def close(self):
        pass


class StdinLines:
    """The lines of the stdin channel, in order: one message may hold several lines.

    get() takes a line already split off, or reads the next message of the
    channel; '' once the channel has ended (sticky). Lines are split here so
    readline() returns one line at a time, and a last line without a newline
    gets one (the client may send either).
    """

    def __init__(self, channel):
        self._channel = channel
        self._lines = deque()
        self._lock = threading.Lock()
        self._eof = False

    def _take(self):
        """A buffered line, '' at the end, None if there is none (lock held)."""
        if self._lines:
            return self._lines.popleft()
        return "" if self._eof else None

    def get(self, block=True):
        """The next line; '' when stdin has ended; None when not blocking and none is there."""
        while True:
            with self._lock:
                line = self._take()
                if line is not None:
                    return line
            if not block and not self._channel.pending:
                if self._channel.closed:  # ended, or the connection is gone
                    with self._lock:
                        self._eof = True
                    continue
                return None
            message = self._channel.read_one(block=INPUT_WAIT_SLICE)
            with self._lock:
                if not message:
                    if self._channel.closed and not self._channel.pending:
                        self._eof = True
                    continue
                if isinstance(message, bytes):
                    message = message.decode("utf-8", "replace")
                lines = message.splitlines(True)
                if lines and not lines[-1].endswith("\n"):
                    lines[-1] += "\n"
                self._lines.extend(lines)

    def unget(self, text):
        """Put back the unread rest of a line (readline with a size)."""
        with self._lock:
            self._lines.appendleft(text)


class InputStream(io.TextIOBase):
    """sys.stdin of the kernel: lines from the client.

    Before blocking, it calls on_wait(password, prompt) so the kernel can report
    that user code waits for input, and on_resume() once it has the line.
    """

    encoding = "utf-8"
    errors = "strict"
    newlines = None
    mode = "r"

    def __init__(self, lines, on_wait, on_resume):
        # lines: a StdinLines
        self._lines = lines
        self._on_wait = on_wait
        self._on_resume = on_resume

    @property
    def name(self):
        return "<stdin>"

    def readline(self, size=-1):
        if size is None:
            size = -1
        if size == 0:
            return ""
        return self.read_line(size=size)

    def read_line(self, size=-1, password=False, prompt=None):
        """One line from the client (with its newline); '' at the end of stdin."""
        line = self._lines.get(block=False)
        if line is None:
            self._on_wait(password, prompt)
            try:
                line = self._lines.get()
            finally:
                self._on_resume()
        if 0 < size < len(line):
            self._lines.unget(line[size:])
            line = line[:size]
        return line

    def read(self, size=-1):
        if size is None or size < 0:
            return "".join(iter(self.readline, ""))
        parts, count = [], 0
        while count < size:
            line = self.readline(size - count)
            if not line:
                break
            parts.append(line)
            count += len(line)
        return "".join(parts)

    def readlines(self, hint=-1):
        lines, total = [], 0
        for line in iter(self.readline, ""):
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def readable(self):
        return True

    def isatty(self):
        return False

    def close(self):
        """Stays open: exit() closes sys.stdin, and the kernel keeps needing it."""

    def __repr__(self):
        return "<InputStream <stdin>>"


def make_getpass(stdin, stdout):
    """A getpass.getpass that asks the client (status "input", password true), no /dev/tty."""
    def getpass(prompt="Password: ", stream=None):
        stream = stream if stream is not None else stdout
        stream.write(prompt)
        stream.flush()
        line = stdin.read_line(password=True, prompt=None if stream is stdout else prompt)
        if not line:
            raise EOFError
        return line[:-1] if line.endswith("\n") else line
    getpass.__doc__ = "Prompt for a password without echo; the kernel's client reads it."
    return getpass
