"""The kernel's Reporter (interpreter/kernel/status.py) with fake client links: output
is numbered and ordered by ORDER records, statuses carry the counts and never wait
for a stalled output channel, messages are cut to the client's maximum.

No sockets and no kernel process: the links record what is sent.
"""

import json
import threading

import pytest

from interpreter.kernel.status import Reporter
from interpreter.kernel.streams import FLUSH_CHARS, OutputStream
from interpreter.protocol import FromKernel

TIMEOUT = 10.0
STDOUT, STDERR, STATUS, ORDER = (FromKernel.STDOUT, FromKernel.STDERR, FromKernel.STATUS,
                                 FromKernel.ORDER)


class FakeLink:
    """Records (channel, text) sent; a channel in `busy` is not idle; a channel in
    `stalled` blocks send() until `release` is set."""

    def __init__(self, max_message=256 * 1024 * 1024):
        self.max_message = max_message
        self.sent = []
        self.busy = set()
        self.stalled = set()
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.cond = threading.Condition()

    def send(self, index, text):
        if index in self.stalled:
            self.blocked.set()
            assert self.release.wait(TIMEOUT)
        with self.cond:
            self.sent.append((index, text))
            self.cond.notify_all()

    def idle(self, index):
        return index not in self.busy

    def flush(self, index):
        pass

    def wait_for(self, predicate):
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.sent), TIMEOUT), self.sent


@pytest.fixture
def setup():
    links = [FakeLink()]
    made = []

    def make(**options):
        links[0] = FakeLink(**options)
        reporter = Reporter(links[:1])
        made.append(reporter)
        out = OutputStream(reporter.output, STDOUT, "<stdout>")
        err = OutputStream(reporter.output, STDERR, "<stderr>")
        return reporter, links[0], out, err

    yield make
    for reporter in made:
        reporter.links[0].release.set()
        reporter.output.close()


def statuses(sent):
    return [json.loads(text) for index, text in sent if index == STATUS]


def test_a_flush_is_an_order_record_then_its_messages(setup):
    reporter, link, out, err = setup()
    out.write("a")
    err.write("b")
    out.write("c\n")
    reporter.write_status({"status": "ready"})
    assert link.sent == [(ORDER, "010"), (STDOUT, "a"), (STDERR, "b"), (STDOUT, "c\n"),
                         (STATUS, '{"status":"ready","stdout":2,"stderr":1}')]


def test_counts_add_up_and_empty_writes_are_no_messages(setup):
    reporter, link, out, err = setup()
    out.write("")
    reporter.write_status({"status": "busy"})
    out.write("x")
    reporter.write_status({"status": "ready"})
    assert [(s["stdout"], s["stderr"]) for s in statuses(link.sent)] == [(0, 0), (1, 0)]
    assert [text for index, text in link.sent if index == STDOUT] == ["x"]


def test_a_status_goes_first_when_the_channel_is_not_idle(setup):
    reporter, link, out, _ = setup()
    link.busy.add(STDOUT)
    out.write("held back\n")
    reporter.write_status({"status": "ready"})
    assert link.sent[:2] == [(ORDER, "0"), (STATUS, '{"status":"ready","stdout":1,"stderr":0}')]
    link.wait_for(lambda sent: (STDOUT, "held back\n") in sent)   # the flusher sends it


def test_a_status_does_not_wait_for_a_blocked_writer(setup):
    reporter, link, out, _ = setup()
    link.stalled.add(STDOUT)
    writer = threading.Thread(target=out.write, args=("x" * (FLUSH_CHARS + 1),))
    writer.start()
    assert link.blocked.wait(TIMEOUT)   # the writer blocks in its send (flow control)
    reporter.write_status({"status": "input", "prompt": ""})
    assert statuses(link.sent) == [{"status": "input", "prompt": "", "stdout": 1, "stderr": 0}]
    assert writer.is_alive()
    link.release.set()
    writer.join(TIMEOUT)
    assert (STDOUT, "x" * (FLUSH_CHARS + 1)) in link.sent


def test_messages_are_cut_to_the_clients_maximum(setup):
    reporter, link, out, _ = setup(max_message=100)
    out.write("é" * 60)
    reporter.write_status({"status": "ready"})
    assert link.sent[0] == (ORDER, "000")
    assert [text for index, text in link.sent if index == STDOUT] == ["é" * 25, "é" * 25, "é" * 10]
