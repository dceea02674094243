"""The kernel's status as the client sees it, from the messages of the STATUS channel.

Pure bookkeeping (client side): feed() takes each status message's text, and
the client tells the tracker what it sent (execute requests, console lines)
and when the process died. Not thread-safe: the client holds its condition
around every call.

The client's status differs from the last message in two ways: "dead" once
the process has exited, and "busy" while an execute request sent to a ready
kernel has not been answered (the kernel will be busy with it).
"""

from . import protocol

__all__ = ["STARTING", "DEAD", "IDLE", "StatusTracker"]

STARTING, DEAD = "starting", "dead"
# Statuses in which the kernel waits for the client.
IDLE = (protocol.READY, protocol.INPUT, protocol.DEBUG)


class StatusTracker:
    """Status, prompt, count and run bookkeeping, fed with status messages.

    before_idle: called before a ready/input/debug message is applied (the
    client delivers the output of the process's pipes first).
    """

    def __init__(self, before_idle=None):
        self.before_idle = before_idle
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

    @property
    def status(self):
        """"starting", "ready", "busy", "input", "debug" or "dead"."""
        if self.dead:
            return DEAD
        if self.raw_status == protocol.READY and self.outstanding:
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
        if not self.dead:
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
