"""The client's output store (interpreter/output.py) over a loopback connection: a
fake kernel sends ORDER records and output as docs/protocol.md says, and the views
give the kernel's order, the numbers statuses refer to, and the pipes' text.
"""

import pytest

from channels import Channels
from interpreter.output import OrderedView, OutputStore, StreamView
from interpreter.protocol import FromKernel

KEY = b"output store test"
T = 10.0


@pytest.fixture
def wire():
    """(kernel-side sending channels by FromKernel, the client's OutputStore)."""
    host = Channels(key=KEY)
    port = host.host()
    kernel = Channels(key=KEY)
    try:
        kernel.connect(port, timeout=T)
        assert host.wait_connected(T)
        send = {index: kernel.get_sending_channel(index) for index in FromKernel}
        store = OutputStore(*(host.get_receiving_channel(index) for index in
                              (FromKernel.ORDER, FromKernel.STDOUT, FromKernel.STDERR)))
        yield send, store
    finally:
        kernel.close(timeout=1)
        host.close(timeout=1)


def test_the_ordered_view_follows_the_records_not_the_arrival(wire):
    send, store = wire
    # The messages arrive before their record, stderr first: the record decides.
    send[FromKernel.STDERR].write("err\n")
    send[FromKernel.STDOUT].write("out\n")
    send[FromKernel.STDOUT].write("more\n")
    send[FromKernel.STDERR].flush()
    send[FromKernel.STDOUT].flush()
    send[FromKernel.ORDER].write("010")
    view = OrderedView(store)
    assert [view.read_one(T) for _ in range(3)] == [
        ("stdout", "out\n"), ("stderr", "err\n"), ("stdout", "more\n")]
    assert store.counts == {"stdout": 2, "stderr": 1}
    assert view.read_one(False) is None


def test_stream_views_share_the_store_and_local_text_joins_in_order(wire):
    send, store = wire
    stdout, stderr, view = StreamView(store, "stdout"), StreamView(store, "stderr"), OrderedView(store)
    send[FromKernel.ORDER].write("1")
    send[FromKernel.STDERR].write("kernel err\n")
    assert stderr.read_one(T) == "kernel err\n"
    stdout.inject("from a pipe\n")             # the process's pipe: after what came so far
    send[FromKernel.ORDER].write("0")
    send[FromKernel.STDOUT].write("kernel out\n")
    assert view.read_one(T) == ("stdout", "from a pipe\n")
    assert view.read_one(T) == ("stdout", "kernel out\n")
    assert store.counts == {"stdout": 1, "stderr": 1}


def test_a_read_waits_for_output_a_status_counted(wire):
    send, store = wire
    stdout = StreamView(store, "stdout")
    store.counted({"status": "ready", "stdout": 1, "stderr": 0})
    send[FromKernel.ORDER].write("0")
    send[FromKernel.STDOUT].write("counted\n")
    assert stdout.read(False) == "counted\n"   # not '' although it was not here yet
    assert stdout.read(False) == ""


def test_text_injected_after_catch_up_follows_the_output_a_status_counted(wire):
    # A hub relays statuses directly and output through a queue: the ready can
    # come first. The console waits (catch_up) before it puts its prompt's
    # marker in, so the marker comes after that output.
    import threading
    send, store = wire
    view = OrderedView(store)
    with store.cond:
        store.counted({"status": "ready", "stdout": 1, "stderr": 1})
    caught = []
    waiter = threading.Thread(target=lambda: caught.append(view.catch_up(T)))
    waiter.start()
    send[FromKernel.ORDER].write("01")
    send[FromKernel.STDOUT].write("out\n")
    send[FromKernel.STDERR].write("Traceback\n")
    waiter.join(T)
    assert caught == [True]
    view.inject("stdout", "PROMPT")
    assert [view.read_one(T) for _ in range(3)] == [
        ("stdout", "out\n"), ("stderr", "Traceback\n"), ("stdout", "PROMPT")]
    assert view.catch_up(0.0) is True            # nothing counted is missing now


def test_catch_up_gives_up_after_its_timeout(wire):
    send, store = wire
    with store.cond:
        store.counted({"status": "ready", "stdout": 1, "stderr": 0})
    assert OrderedView(store).catch_up(0.05) is False   # the message never comes


def test_output_for_another_reader_is_held_only_up_to_a_bound(wire, monkeypatch):
    from interpreter import output
    monkeypatch.setattr(output, "HELD_CHARS", 10)
    send, store = wire
    stdout, stderr = StreamView(store, "stdout"), StreamView(store, "stderr")
    send[FromKernel.ORDER].write("1110")
    for _ in range(3):
        send[FromKernel.STDERR].write("0123456789")
    send[FromKernel.STDOUT].write("out")
    assert stdout.read_one(0.3) == ""            # stderr fills the store: no more is taken
    assert store.size == 10
    assert [stderr.read_one(T) for _ in range(3)] == ["0123456789"] * 3   # its reader frees it
    assert stdout.read_one(T) == "out"
