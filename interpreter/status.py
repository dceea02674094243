"""The kernel's status as the client sees it, from the messages of the STATUS channel.

Pure bookkeeping (client side): feed() takes each status message's text, and
the client tells the tracker what it sent (execute requests, console lines)
and when the process died. Not thread-safe: the client holds its condition
around every call.

The client's status differs from the last message in two ways: "dead" once
the process has exited, and "busy" while an execute request sent to a ready
kernel has not been answered (the kernel will be busy with it).

Shared kernels (shared=True): statuses of other clients' runs carry "peer"
(docs/protocol.md, "Shared kernels"). They are the kernel's state, so they set
the status, but they never answer this client's requests: this client's
console lines are counted (`lines`) until a ready without "peer" answers each,
and while any is unanswered a ready reads as "busy". `peer` is the client
number of the last status's run (None: ours, or nobody's).
"""

from . import protocol

__all__ = ["STARTING", "DEAD", "DETACHED", "IDLE", "StatusTracker"]

STARTING, DEAD, DETACHED = "starting", "dead", "detached"
# Not from the kernel: the client's own record that the hub refused a console line
# of this (read-only) client, so no ready will answer it.
REFUSED = "refused"
# Statuses in which the kernel waits for the client.
IDLE = (protocol.READY, protocol.INPUT, protocol.DEBUG)


class StatusTracker:
    """Status, prompt, count and run bookkeeping, fed with status messages.

    before_idle: called before a ready/input/debug message is applied (the
    client delivers the output of the process's pipes first).
    """

    def __init__(self, before_idle=None, shared=False):
        self.before_idle = before_idle
        self.shared = shared
        self.raw_status = STARTING    # from the last status message
        self.prompt = ""
        self.password = False
        self.count = 0
        self.announced_exit = None    # from an "exit" status message
        self.dead = False
        self.results = {}             # execute id -> its ready message (None until then)
        self.busy = {}                # watched execute id -> its first busy message
        self.outstanding = set()      # execute ids sent and not yet answered
        self.started = set()          # execute ids the kernel said it began (busy)
        self.serial = 0               # status messages handled so far
        self.peer = None              # shared: the client whose run the last status is of
        self.lines = 0                # shared: our console lines not answered yet
        self.detached = False         # shared: this client left (see detach)

    @property
    def status(self):
        """"starting", "ready", "busy", "input", "debug" or "dead"."""
        if self.dead:
            return DETACHED if self.detached else DEAD
        if self.raw_status == protocol.READY and (self.outstanding or self.lines):
            return protocol.BUSY   # an execute request is on its way
        return self.raw_status

    def feed(self, text):
        """Apply one status message (its text as read; malformed ones are ignored)."""
        try:
            message = protocol.decode(text)
        except ValueError:
            return
        status = message.get("status")
        self.serial += 1
        if status in IDLE and self.before_idle is not None:
            self.before_idle()
        if self.shared:
            self._shared(status, message)
        handler = self._HANDLERS.get(status)
        if handler is not None and handler(self, message) is not False:
            self.raw_status = status

    def _ready(self, message):
        self.prompt = message.get("prompt", self.prompt)
        self.count = message.get("count", self.count)
        ident = message.get("id")
        if ident is not None:
            self.outstanding.discard(ident)
            self.started.discard(ident)
            if ident in self.results:
                self.results[ident] = message

    def _busy(self, message):
        self.count = message.get("count", self.count)
        ident = message.get("id")
        if ident is not None and ident in self.results and ident not in self.busy:
            self.busy[ident] = message
        if message.get("id") in self.outstanding:
            self.started.add(message.get("id"))

    def _waiting(self, message):
        self.prompt = message.get("prompt", "")
        self.password = bool(message.get("password"))

    def _exit(self, message):
        self.announced_exit = message.get("exit_code", 0)
        return False   # the status stays until the process is seen to end

    def _shared(self, status, message):
        """What a status of a shared kernel tells besides the kernel's state."""
        peer = message.get("peer")
        self.peer = peer if isinstance(peer, int) and not isinstance(peer, bool) else None
        if self.peer is None and self.lines and message.get("id") is None and (
                status == protocol.READY or status == REFUSED):
            self.lines -= 1   # the answer to our oldest console line (or its refusal)

    _HANDLERS = {
        protocol.READY: _ready,
        protocol.BUSY: _busy,
        protocol.INPUT: _waiting,
        protocol.DEBUG: _waiting,
        protocol.EXIT: _exit,
    }

    # -- what the client did ----------------------------------------------------

    def sent_execute(self, ident):
        """An execute request with id ident is on its way."""
        self.outstanding.add(ident)

    def sent_line(self):
        """A line went to the kernel's stdin: it is busy with it (unless dead)."""
        if self.dead:
            return
        if self.shared and not (self.raw_status in (protocol.INPUT, protocol.DEBUG)
                                and self.peer is None):
            self.lines += 1   # a console line (not the answer to our run's prompt)
            return
        self.raw_status = protocol.BUSY

    def watch(self, ident):
        """Keep the ready message that answers execute id ident (see result)."""
        self.results[ident] = None

    def result(self, ident):
        """The ready message that answered ident, or None (not yet, or not watched)."""
        return self.results.get(ident)

    def begun(self, ident):
        """The first busy message of watched execute id ident, or None."""
        return self.busy.get(ident)

    def unwatch(self, ident):
        self.results.pop(ident, None)
        self.busy.pop(ident, None)

    def nothing_began(self):
        """Ready, with execute requests sent and none of them begun yet."""
        return bool(self.raw_status == protocol.READY and self.outstanding
                    and not self.started & self.outstanding)

    def died(self):
        self.dead = True

    def detach(self):
        """This client left a shared kernel: as dead for every wait, status "detached"."""
        self.detached = True
        self.dead = True
