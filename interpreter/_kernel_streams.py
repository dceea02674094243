"""The kernel's standard streams: sys.stdout/sys.stderr on channels, sys.stdin from the client.

Output: every write of sys.stdout and sys.stderr, from any thread, goes into
one ordered buffer (Output); runs of writes to the same stream are joined and
sent as one message. The buffer is handed to the channels when it grows past
FLUSH_CHARS, when someone flushes (the kernel does before every status), and
FLUSH_DELAY seconds after the first unsent write (a flusher thread that sleeps
while nothing is pending). So a burst of a hundred thousand prints costs a few
dozen messages, and output between statuses still arrives promptly. Writes
after the connection is gone are dropped: they never block or raise.

Input: the client's stdin lines are queued in a LineQueue (filled by the
kernel's forwarding thread); sys.stdin reads them and tells the kernel it
waits (status "input" or "debug") through a callback.
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


class Output:
    """The ordered output buffer shared by sys.stdout and sys.stderr.

    send(index, text) writes text on sending channel `index` of every client;
    it is called with the buffer's lock held, so messages keep their order.
    """

    def __init__(self, send, delay=FLUSH_DELAY):
        self._send = send
        self._delay = delay
        self._lock = threading.RLock()  # reentrant: a signal handler may print
        self._chunks = []               # [(channel index, [text, ...])] in write order
        self._last_index = None
        self._last_parts = None
        self._size = 0
        self._due = False               # the flusher has been asked to flush
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._flusher = None

    def write(self, index, text):
        with self._lock:
            if index == self._last_index:
                self._last_parts.append(text)
            else:
                self._last_index, self._last_parts = index, [text]
                self._chunks.append((index, self._last_parts))
            self._size += len(text)
            if self._size >= FLUSH_CHARS:
                self._flush_locked()
            elif not self._due:
                self._due = True
                if self._flusher is None:
                    self._start_flusher()
                self._wake.set()

    def flush(self):
        """Hand everything pending to the channels (it is then queued on the connection)."""
        with self._lock:
            self._flush_locked()

    def close(self):
        """Flush and stop the flusher thread; later writes are still sent at once."""
        with self._lock:
            self._flush_locked()
            self._delay = 0
        self._closing.set()
        self._wake.set()

    def _flush_locked(self):
        chunks = self._chunks
        if not chunks:
            return
        self._chunks, self._last_index, self._last_parts = [], None, None
        self._size = 0
        self._due = False
        for index, parts in chunks:
            text = parts[0] if len(parts) == 1 else "".join(parts)
            for start in range(0, len(text), MAX_MESSAGE_CHARS):
                self._send(index, text[start:start + MAX_MESSAGE_CHARS])

    def _start_flusher(self):
        self._flusher = threading.Thread(target=self._run_flusher, daemon=True,
                                         name="kernel-output-flusher")
        self._flusher.start()

    def _run_flusher(self):
        while not self._closing.is_set():
            self._wake.wait()
            self._closing.wait(self._delay)  # let the rest of a burst join in
            self._wake.clear()
            try:
                self.flush()
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
        self._index = index
        self._name = name
        self._flush_channels = flush_channels
        self._tail = ""        # the text since the last newline (for prompts)
        self.buffer = _BufferWriter(self)

    @property
    def name(self):
        return self._name

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        if s:
            self._output.write(self._index, s)
            newline = s.rfind("\n")
            if newline >= 0:
                self._tail = s[newline + 1:]
            else:
                tail = self._tail + s
                self._tail = tail if len(tail) <= PROMPT_CHARS else tail[-PROMPT_CHARS:]
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        """Send what was written, and wait until it is handed to the operating system."""
        self._output.flush()
        if self._flush_channels is not None:
            self._flush_channels(self._index)

    @property
    def line_tail(self):
        """The text written since the last newline (what input() shows as its prompt)."""
        return self._tail

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


class LineQueue:
    """The lines the client sent on stdin, in order, and whether stdin has ended."""

    def __init__(self):
        self._lines = deque()
        self._ready = threading.Condition(threading.Lock())
        self._eof = False

    def put(self, text):
        """Queue the lines of one stdin message; a last line without newline gets one."""
        lines = text.splitlines(True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        with self._ready:
            self._lines.extend(lines)
            self._ready.notify_all()

    def put_eof(self):
        with self._ready:
            self._eof = True
            self._ready.notify_all()

    def unget(self, text):
        """Put back the unread rest of a line (readline with a size)."""
        with self._ready:
            self._lines.appendleft(text)

    @property
    def pending(self):
        return bool(self._lines) or self._eof

    def get(self, block=True):
        """The next line; '' when stdin has ended; None when not blocking and none is there."""
        with self._ready:
            while not self._lines:
                if self._eof:
                    return ""
                if not block:
                    return None
                self._ready.wait()
            return self._lines.popleft()


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
