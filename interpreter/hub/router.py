"""What the hub of a shared kernel sends where: pure, no sockets, no threads.

The hub's IO layer hands every message it reads to a Router and moves what
the Router returns: a list of actions `(target, channel, message)`, where
target is a client number, KERNEL or HUB (docs/protocol.md, "Shared kernels").

- Input routing. "Inputs" are STDIN lines at the prompt and CONTROL requests;
  the kernel answers each with exactly one ready. The router keeps `pending`,
  the inputs forwarded and not yet answered, in the order sent, and an
  *owner*, the client whose inputs run. The owner's inputs, and anyone's when
  nothing is pending or held, go to the kernel at once; another client's are
  held until nothing is pending, then that client becomes the owner and all
  its held inputs go. A STDIN message while the kernel waits in input() or pdb
  is an answer (no ready of its own): forwarded only from the client whose
  run asked, or from anyone once that client is gone; anyone else's is held
  as a console line for later.
- Ids. CONTROL and INTROSPECT ids are rewritten to hub ids on the way in and
  back on the way out, so runs and replies go to the client that asked.
- Statuses are rewritten per client: its own id for its own run, else id null
  and "peer"; "stdout"/"stderr" counted from what that client was sent (a
  client starts at an ORDER-record boundary); "process_stdout"/
  "process_stderr" added.
- Read-only clients: their STDIN, CONTROL, terminate and interrupts are
  refused with a SESSION message (and a CONTROL request gets an error status
  and a ready with its id, so a run() waiting for it ends).

How the kernel orders inputs matters for matching readies to them: console
lines run in the order sent, and run before execute requests that wait, so a
ready with id null answers the oldest console line pending, and a ready with
a hub id answers that request (and every console line sent before it). A
console line sent while a run is going may instead be taken by that run's
input() (typed ahead): it then never gets a ready. settle() drops such lines
once the kernel has sat at its prompt for a while (the IO layer calls it).
"""

import json
from collections import deque
from itertools import count

from .. import protocol
from ..protocol import FromKernel, ToKernel

__all__ = ["Router", "KERNEL", "HUB", "INTERRUPT", "END_STDIN", "TERMINATE"]

# Targets of actions besides client numbers.
KERNEL = "kernel"     # channel: a ToKernel channel, INTERRUPT or END_STDIN
HUB = "hub"           # channel: TERMINATE
# Pseudo channels.
INTERRUPT = "interrupt"   # from a client: its INTERRUPT frame; to the kernel: send one
END_STDIN = "end-stdin"   # to the kernel: END on its STDIN
TERMINATE = "terminate"   # to the hub: end the kernel (a full client asked)

OUTPUT = (FromKernel.STDOUT, FromKernel.STDERR)
DIGITS = {"0": FromKernel.STDOUT, "1": FromKernel.STDERR}
PROMPT_STATUSES = (protocol.INPUT, protocol.DEBUG)
# Characters of the kernel process's own output kept until the first client
# comes (start-up messages such as "kernel: gui event loop: tk").
EARLY_CHARS = 65536
# Statuses that belong to a run (and so get "peer" for the other clients).
RUN_STATUSES = (protocol.BUSY, protocol.READY, protocol.INPUT, protocol.DEBUG, protocol.ERROR)


class _Input:
    """One input forwarded to the kernel and not yet answered by a ready."""

    __slots__ = ("client", "hub_id", "maybe_answer")

    def __init__(self, client, hub_id, maybe_answer=False):
        self.client = client
        self.hub_id = hub_id            # CONTROL: the hub id; console line: None
        self.maybe_answer = maybe_answer  # sent while a run went on: input() may take it


class _Client:
    __slots__ = ("number", "readonly", "offsets", "skip", "process")

    def __init__(self, number, readonly, offsets, skip):
        self.number = number
        self.readonly = readonly
        self.offsets = offsets    # channel -> kernel messages before this client (not sent)
        self.skip = skip          # channel -> digits to drop from the next ORDER records
        self.process = {FromKernel.PROCESS_STDOUT: 0, FromKernel.PROCESS_STDERR: 0}


def _usable_id(value):
    """An id the kernel echoes back (see protocol.check_request); None counts."""
    if value is None or (isinstance(value, str) and len(value) <= protocol.MAX_ID_CHARS):
        return True
    return (isinstance(value, int) and not isinstance(value, bool)
            and -protocol.MAX_ID - 1 <= value <= protocol.MAX_ID)


def _decode_object(message):
    """The dict of a JSON text message, or None (binary, not JSON, too nested)."""
    if not isinstance(message, str):
        return None
    if message.count("[") + message.count("{") > protocol.MAX_CONTAINERS:
        return None   # let the kernel refuse it (and never recurse deeply here)
    try:
        decoded = json.loads(message)
    except (ValueError, RecursionError, MemoryError):
        return None
    return decoded if isinstance(decoded, dict) else None


def _lines(text):
    """How many lines a STDIN message holds (the last may lack its newline)."""
    return text.count("\n") + (0 if text.endswith("\n") else 1)


class Router:
    """The routing state of one hub. Every method returns a list of actions."""

    def __init__(self, kernel_pid=None, hub_pid=None, persistent=False):
        self.kernel_pid, self.hub_pid, self.persistent = kernel_pid, hub_pid, persistent
        self.clients = {}            # number -> _Client (attached)
        self.kernel = "connected"    # the hub's connection to the kernel
        self.status = None           # the kernel's last status (dict), None before the first
        self.pending = deque()       # _Input, in the order forwarded
        self.held = deque()          # (client, channel, message) not forwarded yet
        self.owner = None            # the client whose inputs run (may have left)
        self.current = None          # the client whose run the last busy began
        self.announced = {FromKernel.STDOUT: 0, FromKernel.STDERR: 0}   # ORDER digits
        self.received = {FromKernel.STDOUT: 0, FromKernel.STDERR: 0}    # messages
        self.control_ids = {}        # hub id -> (client, its id)
        self.introspect_ids = {}     # hub id -> (client, its id)
        self.unusable_introspect = None   # who sent the last INTROSPECT without a usable id
        self.exited = False          # the kernel's exit status was relayed
        self.early = []              # (channel, text) of the process before any client
        self.early_chars = 0
        self.ever_attached = False
        self._ids = count(1)

    # -- clients come and go ----------------------------------------------------

    def attach(self, client, readonly=False):
        """A new client: it starts at an ORDER-record boundary. Its welcome and the
        kernel's last status go to it, the new count to the others."""
        offsets, skip = {}, {}
        for channel in OUTPUT:
            offsets[channel] = max(self.announced[channel], self.received[channel])
            skip[channel] = max(0, self.received[channel] - self.announced[channel])
        self.clients[client] = _Client(client, readonly, offsets, skip)
        welcome = {"type": "welcome", "client": client, "readonly": bool(readonly),
                   "kernel_pid": self.kernel_pid, "hub_pid": self.hub_pid,
                   "persistent": bool(self.persistent), "kernel": self.kernel,
                   "clients": len(self.clients)}
        actions = [(client, FromKernel.SESSION, protocol.encode(welcome))]
        if not self.ever_attached:
            self.ever_attached = True
            for channel, text in self.early:
                self.clients[client].process[channel] += 1
                actions.append((client, channel, text))
            self.early = []
        if self.status is not None:
            actions.append((client, FromKernel.STATUS, self._status_for(client, self.status)))
        actions += self._to_others(client, self._clients_message())
        return actions

    def detach(self, client):
        """A client left: its held inputs are dropped; the others learn the count."""
        if self.clients.pop(client, None) is None:
            return []
        self.held = deque(item for item in self.held if item[0] != client)
        if self.unusable_introspect == client:
            self.unusable_introspect = None
        for hub_id in [h for h, (c, _) in self.introspect_ids.items() if c == client]:
            del self.introspect_ids[hub_id]   # its reply has nobody to go to
        actions = self._to_others(client, self._clients_message())
        if self.answering() and self.status.get("_client") == client:
            # Its run waits in input() or pdb: anyone may answer now. The status
            # again, without "peer", tells the others so.
            self.status["_client"] = None
            actions += [(other, FromKernel.STATUS, self._status_for(other, self.status))
                        for other in self.clients]
        return actions + self._release()

    def _clients_message(self):
        return protocol.encode({"type": "clients", "count": len(self.clients)})

    def _to_others(self, client, message):
        return [(other, FromKernel.SESSION, message) for other in self.clients if other != client]

    def _broadcast(self, channel, message):
        return [(client, channel, message) for client in self.clients]

    def set_kernel_state(self, state):
        """The hub's connection to the kernel became "connected" or "unresponsive"."""
        if state == self.kernel:
            return []
        self.kernel = state
        return self._broadcast(FromKernel.SESSION,
                               protocol.encode({"type": "kernel", "state": state}))

    # -- from a client -------------------------------------------------------------

    def from_client(self, client, channel, message=None):
        """A message a client sent on channel (a ToKernel channel, or INTERRUPT)."""
        state = self.clients.get(client)
        if state is None:
            return []
        if channel == ToKernel.INTROSPECT:
            return self._introspect(client, message)
        if channel == ToKernel.SESSION:
            return self._session(state, message)
        if channel == INTERRUPT:
            if state.readonly:
                return self._refused(client, "interrupt")
            return [(KERNEL, INTERRUPT, None)]
        if channel not in (ToKernel.STDIN, ToKernel.CONTROL):
            return []   # channels the kernel does not read: not forwarded
        if state.readonly:
            return self._refuse_input(client, channel, message)
        if channel == ToKernel.STDIN and self.answering():
            run = self.current
            if run == client or run not in self.clients:
                return [(KERNEL, ToKernel.STDIN, message)]
            self.held.append((client, channel, message))
            return []
        if client == self.owner or (not self.pending and not self.held):
            self.owner = client
            return self._forward(client, channel, message)
        self.held.append((client, channel, message))
        return []

    def answering(self):
        """Does the kernel wait in input() or pdb (a STDIN line is an answer)?"""
        return self.status is not None and self.status.get("status") in PROMPT_STATUSES

    def _forward(self, client, channel, message):
        """An input goes to the kernel: count the readies it is owed, and show the
        other clients what runs (see _echo)."""
        maybe_answer = bool(self.pending) or not self.idle()
        if channel == ToKernel.STDIN:
            if not isinstance(message, str):
                self.pending.append(_Input(client, None, maybe_answer))
                return [(KERNEL, channel, message)]
            for _ in range(_lines(message)):
                self.pending.append(_Input(client, None, maybe_answer))
            echo = [] if maybe_answer else self._echo(client, {
                "kind": "line", "text": message, "prompt": (self.status or {}).get("prompt")})
            return echo + [(KERNEL, channel, message)]
        request = _decode_object(message)
        if request is None or not _usable_id(request.get("id")):
            # The kernel refuses it with id null: a ready with id null answers it.
            self.pending.append(_Input(client, None))
            return [(KERNEL, channel, message)]
        hub_id = next(self._ids)
        self.control_ids[hub_id] = (client, request.get("id"))
        request["id"] = hub_id
        self.pending.append(_Input(client, hub_id))
        echo = []
        if request.get("type") == protocol.EXECUTE and isinstance(request.get("source"), str):
            echo = self._echo(client, {"kind": "execute", "text": request["source"],
                                       "filename": request.get("filename"),
                                       "lineno": request.get("lineno", 1)})
        return echo + [(KERNEL, channel, protocol.encode(request))]

    def _echo(self, client, fields):
        """PEER_INPUT {"peer": client, ...} to every other client: what one client
        sends to run, as it goes to the kernel, so before that run's output (a line
        the kernel may take as an answer to input() is not shown: it may be a
        password)."""
        text = protocol.encode(dict({"peer": client}, **fields))
        return [(other, FromKernel.PEER_INPUT, text) for other in self.clients
                if other != client]

    def _introspect(self, client, message):
        request = _decode_object(message)
        if request is None or "id" not in request or request["id"] is None \
                or not _usable_id(request["id"]):
            self.unusable_introspect = client
            return [(KERNEL, ToKernel.INTROSPECT, message)]
        hub_id = next(self._ids)
        self.introspect_ids[hub_id] = (client, request["id"])
        request["id"] = hub_id
        return [(KERNEL, ToKernel.INTROSPECT, protocol.encode(request))]

    def _session(self, state, message):
        request = _decode_object(message)
        kind = request.get("type") if request is not None else None
        if kind == "terminate":
            if state.readonly:
                return self._refused(state.number, "terminate")
            return [(HUB, TERMINATE, None)]
        error = {"type": "error", "error": "unknown session request: %s" % (
            json.dumps(kind) if isinstance(kind, str) else "not a JSON object with a 'type'")}
        return [(state.number, FromKernel.SESSION, protocol.encode(error))]

    # -- read-only clients ------------------------------------------------------------

    def _refused(self, client, request):
        reason = "this client is read-only: it cannot %s" % {
            "stdin": "send input", "execute": "execute code", "postmortem": "debug",
            "interrupt": "interrupt the kernel", "terminate": "end the kernel"}[request]
        return [(client, FromKernel.SESSION, protocol.encode(
            {"type": "refused", "request": request, "reason": reason}))]

    def _refuse_input(self, client, channel, message):
        """A read-only client's STDIN or CONTROL: refused; a CONTROL request also
        gets its error status and ready (its run() ends), then the kernel's status."""
        if channel == ToKernel.STDIN:
            return self._refused(client, "stdin")
        request = _decode_object(message) or {}
        kind = protocol.POSTMORTEM if request.get("type") == protocol.POSTMORTEM \
            else protocol.EXECUTE
        ident = request.get("id") if _usable_id(request.get("id")) else None
        actions = self._refused(client, kind)
        last = self.status or {}
        view = self._counts_for(self.clients[client], last)
        error = dict({"status": protocol.ERROR, "id": ident,
                      "error": "ReadOnly: this client is read-only: it cannot send %s "
                               "requests" % kind}, **view)
        ready = dict({"status": protocol.READY, "prompt": ">>> ", "count": last.get("count", 0),
                      "id": ident, "error": "ReadOnly"}, **view)
        actions.append((client, FromKernel.STATUS, protocol.encode(error)))
        actions.append((client, FromKernel.STATUS, protocol.encode(ready)))
        if self.status is not None and self.status.get("status") != protocol.READY:
            actions.append((client, FromKernel.STATUS, self._status_for(client, self.status)))
        return actions

    # -- from the kernel -------------------------------------------------------------

    def from_kernel(self, channel, message):
        """A message the kernel sent on channel (a FromKernel channel)."""
        if channel == FromKernel.ORDER:
            return self._order(message)
        if channel in OUTPUT:
            self.received[channel] += 1
            number = self.received[channel]
            return [(c, channel, message) for c, state in self.clients.items()
                    if number > state.offsets[channel]]
        if channel == FromKernel.STATUS:
            return self._status(message)
        if channel == FromKernel.INTROSPECT:
            return self._reply(message)
        return []

    def from_process(self, channel, text):
        """Text the kernel process wrote to fd 1 (PROCESS_STDOUT) or fd 2 (PROCESS_STDERR)."""
        if not text:
            return []
        if not self.ever_attached:
            if self.early_chars < EARLY_CHARS:
                text = text[:EARLY_CHARS - self.early_chars]
                self.early.append((channel, text))
                self.early_chars += len(text)
            return []
        for state in self.clients.values():
            state.process[channel] += 1
        return self._broadcast(channel, text)

    def early_text(self):
        """What the process wrote before any client came (for a failed start)."""
        return "".join(text for _, text in self.early).strip()

    def _order(self, record):
        if not isinstance(record, str):
            return []
        digits = {FromKernel.STDOUT: record.count("0"), FromKernel.STDERR: record.count("1")}
        actions = []
        for client, state in self.clients.items():
            text = record
            if state.skip[FromKernel.STDOUT] or state.skip[FromKernel.STDERR]:
                kept = []
                for digit in record:
                    channel = DIGITS.get(digit)
                    if channel is not None and state.skip[channel]:
                        state.skip[channel] -= 1
                        continue
                    kept.append(digit)
                text = "".join(kept)
            if text:
                actions.append((client, FromKernel.ORDER, text))
        for channel, number in digits.items():
            self.announced[channel] += number
        return actions

    def _reply(self, message):
        reply = _decode_object(message)
        if reply is None:
            return []
        hub_id = reply.get("id")
        if hub_id is None:
            client = self.unusable_introspect
            if client is None or client not in self.clients:
                return []
            return [(client, FromKernel.INTROSPECT, message)]
        entry = self.introspect_ids.pop(hub_id, None) if isinstance(hub_id, int) else None
        if entry is None or entry[0] not in self.clients:
            return []
        reply["id"] = entry[1]
        return [(entry[0], FromKernel.INTROSPECT, protocol.encode(reply))]

    def _status(self, message):
        status = _decode_object(message)
        if status is None:
            return []
        kind = status.get("status")
        hub_id = status.get("id")
        if hub_id is not None and (type(hub_id) is not int or "id" not in status):
            # The hub gives requests int ids; anything else is no id of ours.
            hub_id = status["id"] = None
        if kind == protocol.BUSY:
            self.current = self._run_client(hub_id)
            status["_client"] = self.current
        elif kind in PROMPT_STATUSES:
            # Its client may answer; anyone once that client has left.
            status["_client"] = self.current if self.current in self.clients else None
        elif kind == protocol.ERROR:
            status["_client"] = self._run_client(hub_id)
        elif kind == protocol.READY:
            status["_client"] = self._answered(hub_id)
            self.current = None
        elif kind == protocol.EXIT:
            self.exited = True
        self.status = status
        actions = [(client, FromKernel.STATUS, self._status_for(client, status))
                   for client in self.clients]
        if kind == protocol.READY:
            if hub_id is not None:
                self.control_ids.pop(hub_id, None)
            actions += self._release()
        return actions

    def _run_client(self, hub_id):
        """The client whose input a status with this id belongs to (None: nobody's)."""
        if hub_id is not None:
            entry = self.control_ids.get(hub_id)
            return entry[0] if entry else None
        for item in self.pending:
            if item.hub_id is None:
                return item.client
        return None

    def _answered(self, hub_id):
        """A ready: remove the input it answers from pending; the client of that input."""
        pending = self.pending
        if hub_id is not None:
            entry = self.control_ids.get(hub_id)
            if any(item.hub_id == hub_id for item in pending):
                # That request, and everything sent before it: console lines sent
                # before it ran first (or were taken by input()), requests in order.
                while pending:
                    item = pending.popleft()
                    if item.hub_id == hub_id:
                        break
                    if item.hub_id is not None:
                        self.control_ids.pop(item.hub_id, None)
            return entry[0] if entry else None
        for index, item in enumerate(pending):
            if item.hub_id is None:
                del pending[index]
                return item.client
        return None   # an extra ready (an interrupt at ps2): nobody's input

    def idle(self):
        """Is the kernel at its prompt with nothing pending?"""
        return (self.status is None or self.status.get("status") == protocol.READY) \
            and not self.pending

    def _release(self):
        """Nothing pending: the first held input's client becomes the owner and
        all its held inputs go."""
        if self.pending or not self.held or self.answering():
            return []
        client = self.held[0][0]
        self.owner = client
        mine = [item for item in self.held if item[0] == client]
        self.held = deque(item for item in self.held if item[0] != client)
        actions = []
        for _, channel, message in mine:
            actions += self._forward(client, channel, message)
        return actions

    def unsettled(self):
        """Console lines that may have been taken by input() are the only inputs
        pending, and the kernel is at its prompt: call settle() if it stays there."""
        return (self.status is not None and self.status.get("status") == protocol.READY
                and bool(self.pending) and all(item.maybe_answer for item in self.pending))

    def settle(self):
        """The kernel sat at its prompt: the lines still pending were taken by input()."""
        if not self.unsettled():
            return []
        self.pending.clear()
        return self._release()

    # -- per client views -------------------------------------------------------------

    def _counts_for(self, state, status):
        view = {}
        for name, channel in (("stdout", FromKernel.STDOUT), ("stderr", FromKernel.STDERR)):
            value = status.get(name)
            if isinstance(value, int):
                view[name] = max(0, value - state.offsets[channel])
        view["process_stdout"] = state.process[FromKernel.PROCESS_STDOUT]
        view["process_stderr"] = state.process[FromKernel.PROCESS_STDERR]
        return view

    def _status_for(self, client, status):
        """The status as this client sees it (text)."""
        state = self.clients[client]
        view = {key: value for key, value in status.items() if key != "_client"}
        view.update(self._counts_for(state, status))
        kind = status.get("status")
        if kind in RUN_STATUSES:
            run = status.get("_client")
            if "id" in view and view["id"] is not None:
                entry = self.control_ids.get(view["id"])
                view["id"] = entry[1] if entry is not None and entry[0] == client else None
            if run is not None and run != client:
                view["peer"] = run
        return protocol.encode(view)

    def exit_status(self, exit_code):
        """The kernel died without its exit status: make one for every client."""
        if self.exited:
            return []
        self.exited = True
        status = {"status": protocol.EXIT, "exit_code": exit_code}
        if self.status is not None:
            for name in ("stdout", "stderr"):
                if isinstance(self.status.get(name), int):
                    status[name] = self.status[name]
        self.status = status
        return [(client, FromKernel.STATUS, self._status_for(client, status))
                for client in self.clients]
