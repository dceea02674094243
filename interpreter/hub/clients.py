"""One client of the hub: its connection, the thread that owns it, its bounded backlog.

Threads, both owned by the Client and ended by its connection's end:
- the owner thread (`run`): the TLS handshake if any, then the channels
  handshake (adopt), then it reads the client's requests (STDIN, CONTROL,
  INTROSPECT, SESSION and its INTERRUPT frames) and hands them to the hub; it
  also closes the connection when the hub drops the client, and detaches it;
- the sender thread: output-class messages (channels 0, 1, 4, 5, 6) go through
  a bounded backlog and are written by this thread alone, so a client that
  does not read holds up nobody but itself. Statuses, replies and SESSION
  messages are written directly (they are small).
"""

import threading
from collections import deque

from channels import Channels, ChannelsError, interrupts

from ..protocol import FromKernel, ToKernel
from .router import INTERRUPT

__all__ = ["Client", "BACKLOG_CHANNELS", "WAKE_CHANNEL"]

# Channels whose messages go through the backlog.
BACKLOG_CHANNELS = frozenset((FromKernel.STDOUT, FromKernel.STDERR, FromKernel.ORDER,
                              FromKernel.PROCESS_STDOUT, FromKernel.PROCESS_STDERR,
                              FromKernel.PEER_INPUT))
# A receiving channel of the client's connection the hub itself injects into to
# wake the owner thread (what it then does is in the Client's own queue: a peer
# that writes on this channel only wakes it for nothing).
WAKE_CHANNEL = 127
REQUEST_CHANNELS = (ToKernel.STDIN, ToKernel.CONTROL, ToKernel.INTROSPECT, ToKernel.SESSION)
# Seconds closing a client's connection may take to send what is queued to it.
CLOSE_SECONDS = 2.0
# While the hub's pause lasts, a sender with nothing left to write waits this
# long at a time for its connection to hand the rest to the OS.
FLUSH_SECONDS = 1.0


class Client:
    """A connection accepted by the hub; `number` is set when it is attached."""

    def __init__(self, hub, sock, readonly, key, window, tls_context=None):
        self.hub = hub
        self.sock = sock
        self.readonly = readonly
        self.tls_context = tls_context
        self.relay = None
        self.number = None
        self.channels = Channels(key=key, allow_interrupt=self._interrupted, window=window)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.backlog = deque()       # (channel, text)
        self.backlog_chars = 0
        self.over = False            # past the bound (the hub decides what that means)
        self.events = deque()        # INTERRUPT, or ("drop", reason), for the owner thread
        self.writing = False         # the sender is in a write or flush (which may block)
        self.report_asked = False    # the hub waits to learn when this client caught up
        self.ended = False           # the sender stops
        self.thread = threading.Thread(target=self.run, daemon=True,
                                       name="hub-client")
        self.sender = threading.Thread(target=self._send_loop, daemon=True,
                                       name="hub-client-sender")
        self._senders = {}

    def start(self):
        self.thread.start()

    # -- called by the hub (hub lock held) ------------------------------------------

    def send(self, channel, message):
        """Queue an output-class message or write any other one now. Returns the
        backlog size in characters (0 for a direct write)."""
        if channel in BACKLOG_CHANNELS:
            with self.lock:
                self.backlog.append((channel, message))
                self.backlog_chars += len(message)
                self.cond.notify()
                return self.backlog_chars
        sender = self._senders.get(channel)
        if sender is None:
            sender = self._senders[channel] = self.channels.get_sending_channel(channel)
        try:
            sender.write(message)
        except (ChannelsError, ValueError, OSError):
            pass   # the connection is gone: its owner thread detaches it
        return 0

    def direct_unsent(self):
        """Bytes of statuses not yet handed to the OS (a client that reads nothing)."""
        try:
            return self.channels.get_sending_channel(FromKernel.STATUS).unsent
        except (ChannelsError, ValueError, OSError):
            return 0

    def drop(self, reason):
        """Disconnect this client with a reason (done by its owner thread)."""
        self._event(("drop", reason))

    # -- the owner thread ---------------------------------------------------------------

    def _interrupted(self):
        # Called by the connection's IO thread with its lock held: never block.
        self._event(INTERRUPT)

    def _event(self, event):
        with self.lock:
            self.events.append(event)
        try:
            self.channels.get_receiving_channel(WAKE_CHANNEL).inject("wake")
        except (ChannelsError, ValueError, OSError):
            pass

    def run(self):
        interrupts.block_in_this_thread()
        attached = False
        counted = True   # among the hub's handshakes in progress
        try:
            if not self._connect():
                return
            self.sender.start()
            counted = False
            attached = self.hub.attach(self)   # no longer a handshake, now a client
            if attached:
                self._serve()
            else:
                self.channels.close(0.5, reason=self.hub.end_reason or "the hub is ending")
        except Exception:   # a bug: this client ends, the others go on
            self.hub.debug_exception("client %s" % self.number)
        finally:
            if counted:
                self.hub.handshake_done()
            self.channels.close(0.1)
            with self.lock:
                self.ended = True
                self.cond.notify_all()
            if attached:
                self.hub.detach(self)
            if self.sender.is_alive():
                self.sender.join(CLOSE_SECONDS)
            if self.relay is not None:
                self.relay.close()
            self.hub.client_ended(self)

    def _connect(self):
        """The TLS and channels handshakes; False if the peer failed them."""
        sock = self.sock
        try:
            if self.tls_context is not None:
                from channels import tls
                self.relay = tls.accept_tls(sock, self.tls_context, self.hub.handshake_seconds)
                sock = self.relay.plain
            self.channels.adopt(sock, role="host", timeout=self.hub.handshake_seconds)
        except Exception as error:
            self.hub.debug("client handshake failed: %r", error)
            try:
                sock.close()
            except OSError:
                pass
            return False
        return self.channels.wait_connected(self.hub.handshake_seconds + 1.0)

    def _serve(self):
        channels = self.channels
        waited = [channels.get_receiving_channel(index) for index in REQUEST_CHANNELS]
        wake = channels.get_receiving_channel(WAKE_CHANNEL)
        while True:
            ready = channels.wait_any(waited + [wake])
            for channel in ready:
                if channel is wake:
                    wake.read(False)
                    continue
                message = channel.read_one(False)
                if message:
                    self.hub.from_client(self, channel.index, message)
                elif channel.closed:
                    waited.remove(channel)   # the client ended it: ignored from now
            with self.lock:
                events, self.events = list(self.events), deque()
            for event in events:
                if event == INTERRUPT:
                    self.hub.from_client(self, INTERRUPT, None)
                else:
                    channels.close(CLOSE_SECONDS, reason=event[1])
                    return
            if channels.state == "closed":
                return

    # -- the sender thread ----------------------------------------------------------------

    def ask_report(self):
        """The hub paused the kernel's output: report (backlog_drained) once caught
        up, even if nothing more comes to send (hub lock held)."""
        with self.lock:
            self.report_asked = True
            self.cond.notify()

    def held(self):
        """Characters of output the hub still holds for this client: its backlog and
        what its connection has not handed to the OS yet (a stalled client's
        connection takes a window of megabytes at once, so its backlog alone would
        look as if it kept up)."""
        unsent = 0
        for index in BACKLOG_CHANNELS:
            try:
                unsent += self.channels.get_sending_channel(index).unsent
            except (ChannelsError, ValueError, OSError):
                pass
        return self.backlog_chars + unsent

    def _send_loop(self):
        interrupts.block_in_this_thread()
        senders = {index: self.channels.get_sending_channel(index) for index in BACKLOG_CHANNELS}
        while True:
            with self.lock:
                while not self.backlog and not self.ended and not self.report_asked:
                    self.cond.wait()
                if self.ended:
                    return
                self.report_asked = False
                item = self.backlog.popleft() if self.backlog else None
                self.writing = True
            try:
                if item is not None:
                    senders[item[0]].write(item[1])   # blocks while the client is far behind
                if self.hub.paused and not self.backlog:
                    self._flush(senders.values())
            except (ChannelsError, ValueError, OSError):
                return
            with self.lock:
                self.writing = False
                if item is not None:
                    self.backlog_chars -= len(item[1])
            self.hub.backlog_drained(self)

    def _flush(self, senders):
        """Wait until the connection has handed all output to the OS, while the
        hub's pause lasts: then this client has caught up."""
        for sender in senders:
            while sender.unsent:
                try:
                    sender.flush(FLUSH_SECONDS)
                    break
                except TimeoutError:
                    if self.ended or not self.hub.paused:
                        return
