"""interpreter.status.StatusTracker: the client's view of the kernel's status, fed
with status messages as JSON strings (pure, no process)."""

import json

import pytest

from interpreter.status import DEAD, IDLE, STARTING, StatusTracker


def msg(**fields):
    return json.dumps(fields)


@pytest.fixture
def t():
    return StatusTracker()


def test_starts_starting_then_ready(t):
    assert t.status == STARTING
    t.feed(msg(status="ready", prompt=">>> ", count=0, id=None, error=None))
    assert (t.status, t.prompt, t.count, t.serial) == ("ready", ">>> ", 0, 1)


def test_execute_is_busy_until_its_ready(t):
    t.feed(msg(status="ready", prompt=">>> ", count=0))
    t.sent_execute(7)
    assert t.status == "busy"           # sent, the kernel has not said busy yet
    assert t.nothing_began()
    t.feed(msg(status="busy", count=1, id=7))
    assert t.status == "busy" and t.count == 1 and not t.nothing_began()
    t.feed(msg(status="ready", prompt=">>> ", count=1, id=7, error=None))
    assert t.status == "ready" and not t.outstanding and not t.started


def test_watched_result(t):
    t.watch(3)
    t.sent_execute(3)
    assert t.result(3) is None
    t.feed(msg(status="ready", prompt=">>> ", count=1, id=3, error="ZeroDivisionError"))
    assert t.result(3)["error"] == "ZeroDivisionError"
    t.unwatch(3)
    assert t.result(3) is None


def test_ready_of_an_unwatched_id_is_not_kept(t):
    t.sent_execute(4)
    t.feed(msg(status="ready", prompt=">>> ", id=4))
    assert t.result(4) is None and t.status == "ready"


def test_ready_of_another_request_leaves_ours_outstanding(t):
    t.sent_execute(1)
    t.sent_execute(2)
    t.feed(msg(status="ready", prompt=">>> ", id=1))
    assert t.status == "busy"
    t.feed(msg(status="ready", prompt=">>> ", id=2))
    assert t.status == "ready"


def test_input_and_debug_prompts(t):
    t.feed(msg(status="input", prompt="Name? ", password=False))
    assert (t.status, t.prompt, t.password) == ("input", "Name? ", False)
    t.feed(msg(status="input", prompt="Password: ", password=True))
    assert t.password
    t.feed(msg(status="debug", prompt="(Pdb) "))
    assert (t.status, t.prompt, t.password) == ("debug", "(Pdb) ", False)


def test_a_sent_line_makes_it_busy(t):
    t.feed(msg(status="ready", prompt=">>> "))
    t.sent_line()
    assert t.status == "busy"
    t.feed(msg(status="ready", prompt="... "))
    assert (t.status, t.prompt) == ("ready", "... ")


def test_exit_is_announced_and_death_is_dead(t):
    t.feed(msg(status="ready", prompt=">>> "))
    t.feed(msg(status="exit", exit_code=3))
    assert t.announced_exit == 3 and t.status == "ready"   # until the process ends
    t.died()
    assert t.status == DEAD
    t.sent_line()
    assert t.status == DEAD


def test_bad_and_unknown_messages_change_nothing(t):
    t.feed(msg(status="ready", prompt=">>> "))
    for text in ("not json", "[1, 2]", msg(status="nonesuch"), msg(no_status=1)):
        t.feed(text)
        assert t.status == "ready" and t.prompt == ">>> "
    assert t.serial == 3   # every JSON object counts, known status or not


def test_before_idle_runs_before_idle_statuses_only():
    seen = []
    t = StatusTracker(before_idle=lambda: seen.append(t.raw_status))
    t.feed(msg(status="busy", count=1))
    t.feed(msg(status="ready", prompt=">>> "))
    t.feed(msg(status="input", prompt=""))
    t.feed(msg(status="exit", exit_code=0))
    assert seen == ["busy", "ready"]   # called before the status is applied
    assert set(IDLE) == {"ready", "input", "debug"}
