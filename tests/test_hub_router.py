"""interpreter.hub.router: who gets what, pure (JSON and text in, actions out; no sockets)."""

import json

import pytest

from interpreter.hub.router import (END_STDIN, HUB, INTERRUPT, KERNEL, TERMINATE, Router)
from interpreter.protocol import FromKernel, ToKernel

STDIN, CONTROL, INTROSPECT, SESSION = (ToKernel.STDIN, ToKernel.CONTROL, ToKernel.INTROSPECT,
                                       ToKernel.SESSION)
STDOUT, STDERR, STATUS, REPLY, ORDER = (FromKernel.STDOUT, FromKernel.STDERR, FromKernel.STATUS,
                                        FromKernel.INTROSPECT, FromKernel.ORDER)
P_OUT, P_ERR, HUB_SESSION = FromKernel.PROCESS_STDOUT, FromKernel.PROCESS_STDERR, FromKernel.SESSION
PEER_INPUT = FromKernel.PEER_INPUT


def j(message):
    return json.dumps(message)


def execute(ident, source="x"):
    return j({"type": "execute", "id": ident, "source": source})


def status(kind, **fields):
    message = {"status": kind, "stdout": 0, "stderr": 0}
    message.update(fields)
    return j(message)


def ready(ident=None, count=1, **fields):
    fields.setdefault("error", None)
    return status("ready", prompt=">>> ", count=count, id=ident, **fields)


def busy(ident=None, count=1, **fields):
    return status("busy", count=count, id=ident, **fields)


def to_kernel(actions):
    return [(channel, message) for target, channel, message in actions if target == KERNEL]


def to_client(actions, client, channel=None):
    out = [(c, m) for t, c, m in actions if t == client and (channel is None or c == channel)]
    return [json.loads(m) if c in (STATUS, REPLY, HUB_SESSION, PEER_INPUT) else m
            for c, m in out] \
        if channel is not None else out


def hub_id(actions):
    [(channel, message)] = to_kernel(actions)
    assert channel == CONTROL
    return json.loads(message)["id"]


@pytest.fixture
def router():
    r = Router(kernel_pid=10, hub_pid=20, persistent=False)
    r.from_kernel(STATUS, ready(count=0))
    return r


def two(router):
    router.attach(1)
    router.attach(2)
    return router


# -- attaching --------------------------------------------------------------------------

def test_welcome_then_the_last_status_then_the_count_to_the_others():
    r = Router(kernel_pid=10, hub_pid=20, persistent=True)
    r.from_kernel(STATUS, ready(count=0))
    assert to_client(r.attach(1), 1, HUB_SESSION) == [
        {"type": "welcome", "client": 1, "readonly": False, "kernel_pid": 10, "hub_pid": 20,
         "persistent": True, "kernel": "connected", "clients": 1}]
    actions = r.attach(2, readonly=True)
    assert to_client(actions, 2, HUB_SESSION)[0]["readonly"] is True
    assert to_client(actions, 2, STATUS) == [
        {"status": "ready", "prompt": ">>> ", "count": 0, "id": None, "error": None,
         "stdout": 0, "stderr": 0, "process_stdout": 0, "process_stderr": 0}]
    assert to_client(actions, 1, HUB_SESSION) == [{"type": "clients", "count": 2}]
    assert to_client(r.detach(2), 1, HUB_SESSION) == [{"type": "clients", "count": 1}]
    assert r.detach(2) == []


def test_a_client_attaching_to_a_busy_kernel_learns_whose_run_it_is(router):
    router.attach(1)
    h = hub_id(router.from_client(1, CONTROL, execute("a")))
    router.from_kernel(STATUS, busy(h, stdout=3))
    [seen] = to_client(router.attach(2), 2, STATUS)
    assert seen["status"] == "busy" and seen["id"] is None and seen["peer"] == 1
    router.from_kernel(STATUS, status("input", prompt="? ", password=False))
    assert to_client(router.attach(3), 3, STATUS)[0]["peer"] == 1


def test_the_kernel_state_goes_to_everyone_once_per_change(router):
    two(router)
    actions = router.set_kernel_state("unresponsive")
    assert to_client(actions, 1, HUB_SESSION) == [{"type": "kernel", "state": "unresponsive"}]
    assert [t for t, _, _ in actions] == [1, 2]
    assert router.set_kernel_state("unresponsive") == []
    assert to_client(router.attach(3), 3, HUB_SESSION)[0]["kernel"] == "unresponsive"


# -- output and counts -------------------------------------------------------------------------

def test_output_goes_to_everyone_as_it_is(router):
    two(router)
    for channel, message in ((ORDER, "01"), (STDOUT, "out"), (STDERR, "err")):
        actions = router.from_kernel(channel, message)
        assert sorted(actions) == [(1, channel, message), (2, channel, message)]


def test_a_new_client_starts_at_an_order_record_boundary(router):
    router.attach(1)
    router.from_kernel(ORDER, "00")
    router.from_kernel(STDOUT, "a")        # announced before client 2: not for it
    router.attach(2)
    assert to_client(router.from_kernel(STDOUT, "b"), 2) == []
    assert to_client(router.from_kernel(ORDER, "01"), 2) == [(ORDER, "01")]
    assert to_client(router.from_kernel(STDOUT, "c"), 2) == [(STDOUT, "c")]
    [seen] = to_client(router.from_kernel(STATUS, ready(stdout=3, stderr=1)), 2, STATUS)
    assert (seen["stdout"], seen["stderr"]) == (1, 1)   # counted from what it was sent
    [own] = to_client(router.from_kernel(STATUS, ready(stdout=3, stderr=1)), 1, STATUS)
    assert (own["stdout"], own["stderr"]) == (3, 1)


def test_messages_ahead_of_their_record_are_cut_from_it_for_a_new_client(router):
    router.attach(1)
    router.from_kernel(STDOUT, "early")        # its record "010" has not come yet
    router.attach(2)
    assert to_client(router.from_kernel(ORDER, "010"), 2) == [(ORDER, "10")]
    assert to_client(router.from_kernel(STDERR, "e"), 2) == [(STDERR, "e")]
    assert to_client(router.from_kernel(STDOUT, "o"), 2) == [(STDOUT, "o")]
    [seen] = to_client(router.from_kernel(STATUS, ready(stdout=2, stderr=1)), 2, STATUS)
    assert (seen["stdout"], seen["stderr"]) == (1, 1)
    assert router.from_kernel(ORDER, "0") == [(1, ORDER, "0"), (2, ORDER, "0")]


def test_counts_are_clamped_at_zero(router):
    router.from_kernel(ORDER, "000")
    router.attach(1)
    [seen] = to_client(router.from_kernel(STATUS, ready(stdout=1)), 1, STATUS)
    assert seen["stdout"] == 0


def test_process_output_is_counted_per_client(router):
    router.attach(1)
    router.from_process(P_OUT, "c1")
    router.attach(2)
    assert sorted(router.from_process(P_ERR, "e")) == [(1, P_ERR, "e"), (2, P_ERR, "e")]
    assert router.from_process(P_OUT, "") == []
    actions = router.from_kernel(STATUS, ready())
    assert [(s["process_stdout"], s["process_stderr"]) for s in to_client(actions, 1, STATUS)] \
        == [(1, 1)]
    assert [(s["process_stdout"], s["process_stderr"]) for s in to_client(actions, 2, STATUS)] \
        == [(0, 1)]


def test_process_output_before_any_client_goes_to_the_first(router):
    router.from_process(P_ERR, "kernel: gui event loop: tk\n")
    assert router.early_text() == "kernel: gui event loop: tk"
    actions = router.attach(1)
    assert to_client(actions, 1, P_ERR) == ["kernel: gui event loop: tk\n"]
    assert to_client(router.attach(2), 2, P_ERR) == []


# -- ids -------------------------------------------------------------------------------------------

def test_control_ids_are_rewritten_both_ways(router):
    two(router)
    h1 = hub_id(router.from_client(1, CONTROL, execute("same")))
    router.from_kernel(STATUS, ready(h1))
    h2 = hub_id(router.from_client(2, CONTROL, execute("same")))
    assert h1 != h2
    actions = router.from_kernel(STATUS, busy(h2))
    assert to_client(actions, 2, STATUS)[0]["id"] == "same" and "peer" not in \
        to_client(actions, 2, STATUS)[0]
    assert to_client(actions, 1, STATUS)[0]["id"] is None
    assert to_client(actions, 1, STATUS)[0]["peer"] == 2


def test_the_rest_of_a_request_is_kept(router):
    router.attach(1)
    [(_, message)] = to_kernel(router.from_client(1, CONTROL, j(
        {"type": "execute", "id": 7, "source": "é", "lineno": 3, "extra": [1]})))
    assert json.loads(message) == {"type": "execute", "id": 1, "source": "é", "lineno": 3,
                                   "extra": [1]}


@pytest.mark.parametrize("message", ["not json", "[1]", j({"type": "execute", "id": 1.5}),
                                     j({"type": "execute", "id": True}), b"\x00binary",
                                     "[" * 200])
def test_a_control_message_without_a_usable_id_goes_as_it_is(router, message):
    router.attach(1)
    assert to_kernel(router.from_client(1, CONTROL, message)) == [(CONTROL, message)]
    assert len(router.pending) == 1
    actions = router.from_kernel(STATUS, j({"status": "error", "id": None, "error": "x",
                                            "stdout": 0, "stderr": 0}))
    assert "peer" not in to_client(actions, 1, STATUS)[0]
    router.from_kernel(STATUS, ready(None))
    assert not router.pending


def test_introspection_replies_go_only_to_the_client_that_asked(router):
    two(router)
    [(_, sent)] = to_kernel(router.from_client(2, INTROSPECT, j({"type": "doc", "id": "q",
                                                                 "expr": "len"})))
    h = json.loads(sent)["id"]
    actions = router.from_kernel(REPLY, j({"id": h, "result": "doc"}))
    assert to_client(actions, 2, REPLY) == [{"id": "q", "result": "doc"}]
    assert to_client(actions, 1) == []
    assert router.from_kernel(REPLY, j({"id": h, "result": "again"})) == []


def test_a_reply_without_a_usable_id_goes_to_the_last_sender_of_such(router):
    two(router)
    bad = j({"type": "doc", "expr": "len"})
    assert to_kernel(router.from_client(1, INTROSPECT, bad)) == [(INTROSPECT, bad)]
    actions = router.from_kernel(REPLY, j({"id": None, "result": None, "error": "e"}))
    assert [t for t, _, _ in actions] == [1]
    router.detach(1)
    assert router.from_kernel(REPLY, j({"id": None, "result": None})) == []


def test_a_reply_for_a_client_that_left_is_dropped(router):
    two(router)
    [(_, sent)] = to_kernel(router.from_client(1, INTROSPECT, j({"type": "namespace", "id": 1})))
    router.detach(1)
    assert router.from_kernel(REPLY, j({"id": json.loads(sent)["id"], "result": []})) == []


# -- input routing -----------------------------------------------------------------------------------

def test_one_client_pipelines_as_today(router):
    router.attach(1)
    for i in range(3):
        assert len(to_kernel(router.from_client(1, CONTROL, execute(i)))) == 1
    assert to_kernel(router.from_client(1, STDIN, "a\nb\n")) == [(STDIN, "a\nb\n")]
    assert len(router.pending) == 5


def test_another_clients_inputs_wait_until_nothing_is_pending(router):
    two(router)
    h = hub_id(router.from_client(1, CONTROL, execute("a1")))
    assert router.from_client(2, CONTROL, execute("b1")) == []
    assert router.from_client(2, STDIN, "b2\n") == []
    h2 = hub_id(router.from_client(1, CONTROL, execute("a2")))     # the owner's go at once
    router.from_kernel(STATUS, busy(h))
    assert to_kernel(router.from_kernel(STATUS, ready(h))) == []   # a2 still pending
    router.from_kernel(STATUS, busy(h2))
    released = to_kernel(router.from_kernel(STATUS, ready(h2)))
    assert [c for c, _ in released] == [CONTROL, STDIN]
    assert router.owner == 2
    assert [item.client for item in router.pending] == [2, 2]


def test_the_new_owner_takes_all_its_held_inputs_and_others_wait_their_turn(router):
    two(router)
    router.attach(3)
    h = hub_id(router.from_client(1, CONTROL, execute("a")))
    router.from_client(2, STDIN, "b1\n")
    router.from_client(3, STDIN, "c1\n")
    router.from_client(2, STDIN, "b2\n")
    released = to_kernel(router.from_kernel(STATUS, ready(h)))
    assert released == [(STDIN, "b1\n"), (STDIN, "b2\n")]
    router.from_kernel(STATUS, ready(None))
    assert to_kernel(router.from_kernel(STATUS, ready(None))) == [(STDIN, "c1\n")]


def test_console_lines_get_a_ready_each_and_blank_runs_are_attributed(router):
    two(router)
    router.from_client(1, STDIN, "x = 1\n\n")
    assert len(router.pending) == 2
    actions = router.from_kernel(STATUS, busy(None))
    assert to_client(actions, 2, STATUS)[0]["peer"] == 1
    assert "peer" not in to_client(actions, 1, STATUS)[0]
    router.from_kernel(STATUS, ready(None))
    actions = router.from_kernel(STATUS, ready(None))
    assert to_client(actions, 2, STATUS)[0]["peer"] == 1 and not router.pending


def test_an_extra_ready_is_nobodys_and_pending_never_goes_below_zero(router):
    two(router)
    actions = router.from_kernel(STATUS, ready(None, error="KeyboardInterrupt"))
    assert all("peer" not in s for s in to_client(actions, 1, STATUS) + to_client(actions, 2, STATUS))
    assert not router.pending
    assert len(to_kernel(router.from_client(2, STDIN, "y\n"))) == 1


def test_a_ready_with_an_id_settles_the_console_lines_before_it(router):
    router.attach(1)
    router.from_client(1, STDIN, "typed\n")
    h = hub_id(router.from_client(1, CONTROL, execute("a")))
    router.from_kernel(STATUS, ready(h))     # the line was taken by input() meanwhile
    assert not router.pending


def test_lines_may_run_before_a_waiting_request(router):
    router.attach(1)
    router.from_client(1, STDIN, "l1\n")
    h = hub_id(router.from_client(1, CONTROL, execute("a")))
    router.from_client(1, STDIN, "l2\n")
    router.from_kernel(STATUS, ready(None))   # l1
    router.from_kernel(STATUS, ready(None))   # l2, which ran before the request
    assert [item.hub_id for item in router.pending] == [h]
    router.from_kernel(STATUS, ready(h))
    assert not router.pending


def test_typed_ahead_lines_are_settled_after_a_quiet_prompt(router):
    two(router)
    h = hub_id(router.from_client(1, CONTROL, execute("input()")))
    router.from_kernel(STATUS, busy(h))
    router.from_client(1, STDIN, "typed ahead\n")   # input() takes it without a status
    router.from_client(2, STDIN, "b\n")
    assert to_kernel(router.from_kernel(STATUS, ready(h))) == []
    assert router.unsettled()
    assert to_kernel(router.settle()) == [(STDIN, "b\n")]
    assert router.owner == 2 and not router.unsettled()
    assert router.settle() == []


def test_a_line_at_an_idle_prompt_is_not_settled(router):
    router.attach(1)
    router.from_client(1, STDIN, "import time; time.sleep(9)\n")
    assert not router.unsettled()


def test_an_answer_comes_only_from_the_client_whose_run_asked(router):
    two(router)
    h = hub_id(router.from_client(1, CONTROL, execute("input()")))
    router.from_kernel(STATUS, busy(h))
    actions = router.from_kernel(STATUS, status("input", prompt="? ", password=False))
    assert to_client(actions, 2, STATUS)[0]["peer"] == 1
    assert "peer" not in to_client(actions, 1, STATUS)[0]
    assert router.from_client(2, STDIN, "not mine\n") == []          # held as a line
    assert to_kernel(router.from_client(1, STDIN, "mine\n")) == [(STDIN, "mine\n")]
    assert len(router.pending) == 1                                   # an answer: no ready
    router.from_kernel(STATUS, busy(h))
    assert to_kernel(router.from_kernel(STATUS, ready(h))) == [(STDIN, "not mine\n")]


def test_anyone_answers_once_the_asker_left(router):
    two(router)
    h = hub_id(router.from_client(1, CONTROL, execute("input()")))
    router.from_kernel(STATUS, busy(h))
    router.from_kernel(STATUS, status("debug", prompt="(Pdb) "))
    # The others learn it from the status again, now without "peer".
    [again] = to_client(router.detach(1), 2, STATUS)
    assert again["status"] == "debug" and "peer" not in again
    assert to_kernel(router.from_client(2, STDIN, "p 1\n")) == [(STDIN, "p 1\n")]
    # pdb's next prompt, and the next: still anyone's.
    [prompt] = to_client(router.from_kernel(STATUS, status("debug", prompt="(Pdb) ")), 2, STATUS)
    assert "peer" not in prompt
    assert to_kernel(router.from_client(2, STDIN, "c\n")) == [(STDIN, "c\n")]
    actions = router.from_kernel(STATUS, ready(h))
    assert to_client(actions, 2, STATUS)[0]["peer"] == 1 and not router.pending


def test_a_client_leaving_at_another_clients_prompt_sends_no_status(router):
    three = two(router)
    three.attach(3)
    h = hub_id(router.from_client(1, CONTROL, execute("input()")))
    router.from_kernel(STATUS, busy(h))
    router.from_kernel(STATUS, status("input", prompt="? ", password=False))
    assert to_client(router.detach(2), 3, STATUS) == []     # client 1 still answers


def test_a_leaving_clients_held_inputs_are_dropped(router):
    two(router)
    h = hub_id(router.from_client(1, CONTROL, execute("a")))
    router.from_client(2, CONTROL, execute("b"))
    router.detach(2)
    assert to_kernel(router.from_kernel(STATUS, ready(h))) == []


def test_when_the_owner_leaves_the_next_input_takes_over_after_pending(router):
    two(router)
    h = hub_id(router.from_client(1, CONTROL, execute("a")))
    router.detach(1)
    assert router.from_client(2, CONTROL, execute("b")) == []   # a still runs
    released = to_kernel(router.from_kernel(STATUS, ready(h)))
    assert len(released) == 1 and router.owner == 2


# -- interrupts, session, read-only --------------------------------------------------------------------

def test_full_clients_interrupt_and_terminate(router):
    two(router)
    assert router.from_client(2, INTERRUPT) == [(KERNEL, INTERRUPT, None)]
    assert router.from_client(1, SESSION, j({"type": "terminate"})) == [(HUB, TERMINATE, None)]
    [error] = to_client(router.from_client(1, SESSION, j({"type": "reboot"})), 1, HUB_SESSION)
    assert error["type"] == "error" and "reboot" in error["error"]
    assert to_client(router.from_client(1, SESSION, "junk"), 1, HUB_SESSION)[0]["type"] == "error"
    assert END_STDIN != INTERRUPT


@pytest.mark.parametrize("channel, message, refused_request", [
    (STDIN, "x = 1\n", "stdin"), (INTERRUPT, None, "interrupt"),
    (SESSION, j({"type": "terminate"}), "terminate")])
def test_a_read_only_client_is_refused(router, channel, message, refused_request):
    router.attach(1)
    router.attach(2, readonly=True)
    actions = router.from_client(2, channel, message)
    assert to_kernel(actions) == [] and [t for t, _, _ in actions] == [2]
    [refused] = to_client(actions, 2, HUB_SESSION)
    assert refused["type"] == "refused" and refused["request"] == refused_request
    assert "read-only" in refused["reason"]


@pytest.mark.parametrize("kind", ["execute", "postmortem"])
def test_a_read_only_request_gets_its_error_and_ready(router, kind):
    router.attach(1)
    router.attach(2, readonly=True)
    actions = router.from_client(2, CONTROL, j({"type": kind, "id": "r"}))
    assert to_kernel(actions) == []
    assert to_client(actions, 2, HUB_SESSION)[0]["request"] == kind
    error, done = to_client(actions, 2, STATUS)
    assert error["status"] == "error" and error["id"] == "r"
    assert error["error"].startswith("ReadOnly: ")
    assert done["status"] == "ready" and done["id"] == "r" and done["error"] == "ReadOnly"
    assert not router.pending


def test_a_read_only_refusal_while_busy_repeats_the_kernels_status(router):
    router.attach(1)
    router.attach(2, readonly=True)
    h = hub_id(router.from_client(1, CONTROL, execute("a")))
    router.from_kernel(STATUS, busy(h, count=4))
    statuses = to_client(router.from_client(2, CONTROL, execute(9)), 2, STATUS)
    assert [s["status"] for s in statuses] == ["error", "ready", "busy"]
    assert statuses[1]["count"] == 4 and statuses[2]["peer"] == 1


def test_a_read_only_client_may_introspect(router):
    router.attach(2, readonly=True)
    assert len(to_kernel(router.from_client(2, INTROSPECT, j({"type": "namespace", "id": 1})))) == 1


def test_messages_of_unknown_clients_and_channels_are_ignored(router):
    router.attach(1)
    assert router.from_client(9, CONTROL, execute(1)) == []
    assert router.from_client(1, 50, "x") == []
    assert router.from_kernel(60, "x") == []
    assert router.from_kernel(STATUS, "not json") == []
    assert router.from_kernel(ORDER, b"01") == []


# -- the end -------------------------------------------------------------------------------------

def test_exit_status_is_relayed_or_made(router):
    router.attach(1)
    router.from_kernel(STATUS, ready(stdout=2))
    [made] = to_client(router.exit_status(-9), 1, STATUS)
    assert made == {"status": "exit", "exit_code": -9, "stdout": 2, "stderr": 0,
                    "process_stdout": 0, "process_stderr": 0}
    assert router.exit_status(-9) == []
    other = Router()
    other.attach(1)
    other.from_kernel(STATUS, status("exit", exit_code=0))
    assert other.exit_status(0) == []


# -- what the others see run ----------------------------------------------------------------

def test_the_other_clients_are_shown_each_line_and_block_that_runs(router):
    r = two(router)
    r.attach(3, readonly=True)
    actions = r.from_client(1, STDIN, "x = 1")
    echo = {"peer": 1, "kind": "line", "text": "x = 1", "prompt": ">>> "}
    assert to_client(actions, 2, PEER_INPUT) == [echo]
    assert to_client(actions, 3, PEER_INPUT) == [echo]
    assert to_client(actions, 1, PEER_INPUT) == []
    r.from_kernel(STATUS, busy())
    r.from_kernel(STATUS, ready())
    actions = r.from_client(2, CONTROL, j({"type": "execute", "id": 5, "source": "y = 2\n",
                                           "filename": "/a.py", "lineno": 3}))
    assert to_client(actions, 1, PEER_INPUT) == [
        {"peer": 2, "kind": "execute", "text": "y = 2\n", "filename": "/a.py", "lineno": 3}]


def test_a_line_that_may_answer_input_is_not_shown(router):
    # Typed ahead while a run goes: input() (or getpass) may take it.
    r = two(router)
    r.from_client(1, CONTROL, execute(1, "input()"))
    r.from_kernel(STATUS, busy(1))
    assert to_client(r.from_client(1, STDIN, "secret"), 2) == []
    r.from_kernel(STATUS, status("input", prompt="", password=True))
    assert to_client(r.from_client(1, STDIN, "secret"), 2) == []


# -- a seeded fuzz: anything clients and the kernel send, in any order ---------------------

def _random_value(rng, depth=0):
    kinds = ["int", "big", "str", "none", "bool", "float", "list", "dict"]
    kind = rng.choice(kinds if depth < 2 else kinds[:6])
    if kind == "int":
        return rng.randint(-5, 5)
    if kind == "big":
        return rng.choice([2 ** 63, -2 ** 70, 10 ** 30])
    if kind == "str":
        return rng.choice(["", "x", "ready", "busy", "input", "execute", "\ud800", "a" * 300])
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float":
        return rng.choice([0.5, float("nan"), 1e308])
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["id", "type", "status", "source", "x"]): _random_value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def _random_message(rng, fields):
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(["", "{", "[1,2", "null", "\x00\xff", b"\x00binary"])
    message = {name: _random_value(rng) if rng.random() < 0.3 else value
               for name, value in fields.items()}
    try:
        return json.dumps(message)
    except ValueError:
        return json.dumps({"type": "execute"})


def test_fuzz_the_router_never_fails_and_only_routes_to_clients_it_has():
    import os
    import random
    seed = int(os.environ.get("INTERPRETER_FUZZ_SEED", random.randrange(2 ** 32)))
    rng = random.Random(seed)
    r = Router(kernel_pid=10, hub_pid=20, persistent=False)
    r.from_kernel(STATUS, ready(count=0))
    attached = set()
    try:
        for step in range(3000):
            roll = rng.random()
            if roll < 0.05 or not attached:
                client = rng.randint(1, 5)
                if client not in attached:
                    actions = r.attach(client, readonly=rng.random() < 0.3)
                    attached.add(client)
                else:
                    actions = r.detach(client)
                    attached.discard(client)
            elif roll < 0.5:
                client = rng.choice(sorted(attached))
                channel = rng.choice([STDIN, CONTROL, INTROSPECT, SESSION, INTERRUPT, 9])
                message = _random_message(rng, {"type": rng.choice(
                    ["execute", "complete", "terminate", "postmortem", "nope"]),
                    "id": rng.choice([1, "a", None]), "source": "x", "code": "x", "cursor": 1})
                actions = r.from_client(client, channel, message)
            elif roll < 0.95:
                channel = rng.choice([STATUS, STATUS, STDOUT, STDERR, ORDER, REPLY])
                if channel == STATUS:
                    message = _random_message(rng, {
                        "status": rng.choice(["ready", "busy", "input", "debug", "error",
                                              "exit"]), "id": rng.choice([None, 1, 2, 3]),
                        "count": 1, "stdout": rng.randint(0, 9), "stderr": 0, "prompt": ">>> ",
                        "error": None})
                elif channel == ORDER:
                    message = rng.choice(["0", "01", "10", "x", "", "0" * 50])
                elif channel == REPLY:
                    message = _random_message(rng, {"id": rng.randint(0, 9), "result": []})
                else:
                    message = rng.choice(["out\n", "", "x" * 100])
                actions = r.from_kernel(channel, message)
            else:
                actions = r.from_process(rng.choice([P_OUT, P_ERR]), rng.choice(["c\n", ""]))
                actions += r.settle()
            for target, channel, message in actions:
                assert target in (KERNEL, HUB) or target in attached, (target, attached)
                if target not in (KERNEL, HUB) and channel in (STATUS, HUB_SESSION, REPLY,
                                                               PEER_INPUT):
                    json.loads(message)   # what a client gets on these is JSON
    except Exception:
        print("INTERPRETER_FUZZ_SEED=%d (step %d)" % (seed, step))
        raise
