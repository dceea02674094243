"""Keep KeyboardInterrupt out of the middle of a frame.

A thread that sends or receives on the socket must not be stopped half-way: a
half-written frame would corrupt the stream, a half-dispatched batch would lose
messages. Only the main thread ever gets KeyboardInterrupt from SIGINT, so
there we install a handler that, inside a critical section, only records the
interrupt and raises it when the section ends. When someone else owns SIGINT
(a custom handler), the main thread leaves socket IO to the IO thread instead.
"""

import signal
import threading

import _signal  # signal.getsignal() wraps this in an enum lookup, too slow for every frame
from _thread import get_ident as _get_ident  # called a few times per message

_main_ident = threading.main_thread().ident
_SIGINT = int(signal.SIGINT)


class _State:
    depth = 0
    pending = False
    sent = 0      # signals interrupt_main() sent
    answered = 0  # the value of sent when the handler last ran
    deliverers = 0  # threads in deliver()


_answer = threading.Condition()  # notified when the handler runs, for deliver()


def _handler(signum, frame):
    _State.answered = _State.sent
    if _State.deliverers:
        with _answer:  # reentrant: a handler run within this one cannot deadlock
            _answer.notify_all()
    if _State.depth:
        _State.pending = True
        return
    raise KeyboardInterrupt


def install():
    """Install the deferring handler if SIGINT is Python's default (main thread only)."""
    if threading.get_ident() != _main_ident:
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _handler)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def block_in_this_thread():
    """Keep SIGINT off the calling (background) thread.

    The OS gives a process-directed SIGINT (Ctrl-C in a terminal) to any thread
    that does not block it. Python runs its handler only in the main thread, and
    a main thread blocked in a system call (select, readline) is woken only if
    the signal is delivered to it: so background threads must block it.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def may_do_io():
    """True when the calling thread can safely run a critical section itself."""
    return _get_ident() != _main_ident or _signal.getsignal(_SIGINT) is _handler


def interrupt_main():
    """Raise KeyboardInterrupt in the main thread, waking it from blocking calls."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and hasattr(signal, "pthread_kill"):
        _State.sent += 1  # before: a handler that runs at once answers this one
        signal.pthread_kill(_main_ident, signal.SIGINT)
    else:
        import _thread
        _thread.interrupt_main()


def unanswered():
    """Did interrupt_main() send a signal our handler has not seen yet?

    The signal can be lost: one that comes after the main thread released the
    GIL to enter a blocking call (time.sleep, select) but before the call began
    only sets Python's flag, and the call waits on (the thread that sends it
    typically runs just then, as it waited for that GIL). Sending it again
    interrupts the call. Only our handler can tell; with another one, False.
    """
    return _State.answered != _State.sent and _signal.getsignal(_SIGINT) is _handler


def send_again():
    """Signal the main thread again for the interrupt not answered yet."""
    signal.pthread_kill(_main_ident, signal.SIGINT)


def deliver(first_wait=0.02, max_wait=1.0, attempts=10):
    """interrupt_main(), and again while our handler has not run: after
    first_wait, then twice as long each time up to max_wait, at most attempts
    times. For a thread that may wait (not the IO thread). False if it never ran.
    """
    with _answer:
        _State.deliverers += 1
        try:
            wait = first_wait
            for _ in range(attempts):
                interrupt_main()
                if _answer.wait_for(lambda: not unanswered(), wait):
                    return True
                wait = min(2 * wait, max_wait)
            return False
        finally:
            _State.deliverers -= 1


def interrupt_taken():
    """The caller took the pending SIGINT itself (as with sigwait): no need to send again."""
    _State.answered = _State.sent


class _Critical:
    """Context manager: SIGINT in the main thread waits until the section ends.

    One shared instance (`critical`): it keeps no per-use state, so it can be
    entered from any thread and nested.
    """

    __slots__ = ()

    def __enter__(self):
        if _get_ident() == _main_ident:
            _State.depth += 1

    def __exit__(self, exc_type, exc, tb):
        if _get_ident() == _main_ident:
            _State.depth -= 1
            if _State.depth == 0 and _State.pending:
                _State.pending = False
                if exc_type is None:
                    raise KeyboardInterrupt


critical = _Critical()
