"""The hub's slow-client policy (interpreter.hub.hub.Hub): when the kernel's output
pauses, which client counts as keeping up, and which is dropped. In-process, with
stand-ins for the clients and the kernel side (no sockets, no threads)."""

from interpreter.hub.hub import Hub
from interpreter.hub.options import Options

LIMIT = 2 * 1024 * 1024
MiB = 1024 * 1024


class FakeKernel:
    def __init__(self):
        self.paused = []

    def pause_output(self, paused):
        self.paused.append(paused)


class FakeClient:
    """What the hub reads of a client: over, writing, backlog_chars, held()."""

    def __init__(self, number, backlog, unsent=0, writing=False):
        self.number = number
        self.backlog_chars = backlog
        self.unsent = unsent
        self.writing = writing
        self.over = False
        self.dropped = None
        self.reports_asked = 0

    def held(self):
        return self.backlog_chars + self.unsent

    def drop(self, reason):
        self.dropped = reason

    def ask_report(self):
        self.reports_asked += 1


def make_hub(*clients):
    hub = Hub(Options(), b"k" * 32, b"r" * 32)
    hub.backlog_limit = LIMIT
    hub.kernel = FakeKernel()
    hub.clients = {client.number: client for client in clients}
    return hub


def test_a_stalled_client_whose_connection_took_a_window_does_not_look_caught_up():
    # The reading client fell behind in a burst (its sender writes to a socket that
    # takes it); the stalled one's backlog is lower only because its connection
    # took 2 MiB at once. Neither has caught up: no resume, nobody dropped.
    reader = FakeClient(1, backlog=LIMIT + MiB // 4, writing=True)
    stalled = FakeClient(2, backlog=MiB, unsent=2 * MiB)
    hub = make_hub(reader, stalled)
    with hub.lock:
        hub._fell_behind(reader)
    assert hub.paused and hub.kernel.paused == [True]
    assert reader.dropped is None and stalled.dropped is None
    assert reader.reports_asked == stalled.reports_asked == 1   # idle senders report
    # The reader drains its backlog and its connection: the kernel resumes, and
    # nobody past the bound is left to drop (the stalled one is under it yet).
    reader.backlog_chars, reader.writing = 0, False
    hub.backlog_drained(reader)
    assert not hub.paused and hub.kernel.paused == [True, False]
    assert reader.dropped is None and stalled.dropped is None


def test_past_the_bound_while_another_keeps_up_the_slow_client_is_dropped():
    reader = FakeClient(1, backlog=0)
    stalled = FakeClient(2, backlog=LIMIT + 1, unsent=2 * MiB, writing=True)
    hub = make_hub(reader, stalled)
    with hub.lock:
        hub._fell_behind(stalled)
    assert not hub.paused and hub.kernel.paused == [True, False]
    assert stalled.dropped == "fell behind: 2 MiB of output unread" and stalled.over
    assert reader.dropped is None


def test_a_client_whose_backlog_is_empty_but_whose_connection_holds_a_window_waits():
    # Its sender wrote everything into its connection, which the client does not
    # read: not caught up until the connection has handed it to the OS.
    slow = FakeClient(1, backlog=LIMIT + 1, writing=True)
    hub = make_hub(slow)
    with hub.lock:
        hub._fell_behind(slow)
    slow.backlog_chars, slow.unsent, slow.writing = 0, 2 * MiB, False
    hub.backlog_drained(slow)
    assert hub.paused
    slow.unsent = 0              # the sender's flush returned
    hub.backlog_drained(slow)
    assert not hub.paused and slow.dropped is None   # alone: paced, never dropped


def test_a_persistent_kernel_drops_its_stalled_clients_and_goes_on():
    slow = FakeClient(1, backlog=LIMIT + 1, writing=True)
    hub = make_hub(slow)
    hub.options.persistent = True
    hub.stall_seconds = 10.0
    with hub.lock:
        hub._fell_behind(slow)
    assert hub.paused and hub.stall_deadline() == hub.progress_at + 10.0
    hub.drop_stalled()                       # too early: nothing happens
    assert hub.paused and slow.dropped is None
    hub.progress_at -= 10.0                  # ten seconds without a write
    hub.drop_stalled()
    assert not hub.paused and hub.kernel.paused == [True, False]
    assert slow.dropped == "stalled: no output read for 10 s (2.0 MiB waiting)"


def test_a_kernel_that_ends_with_its_last_client_waits_for_a_stalled_one():
    slow = FakeClient(1, backlog=LIMIT + 1, writing=True)
    hub = make_hub(slow)
    with hub.lock:
        hub._fell_behind(slow)
    assert hub.stall_deadline() is None
    hub.progress_at -= 100.0
    hub.drop_stalled()
    assert hub.paused and slow.dropped is None
