"""Interrupts: SIGINT to the main thread, kept out of critical sections.

Both processes use this module: the connection (a KeyboardInterrupt must never
leave half a frame), the kernel (no interrupt while it reports status or
starts up; an interrupt that Python swallowed is delivered again) and the
client (its background threads block SIGINT so Ctrl-C reaches the main thread).

Keep KeyboardInterrupt out of the middle of a frame. A thread that sends or receives on the socket must not be stopped half-way: a
half-written frame would corrupt the stream, a half-dispatched batch would lose
messages. Only the main thread ever gets KeyboardInterrupt from SIGINT, so
there we install a handler that, inside a critical section, only records the
interrupt and raises it when the section ends. When someone else owns SIGINT
(a custom handler), the main thread leaves socket IO to the IO thread instead.
"""

import signal
import sys
import threading

import _signal  # signal.getsignal() wraps this in an enum lookup, too slow for every frame
from _thread import get_ident as _get_ident  # called a few times per message

_main_ident = threading.main_thread().ident
_SIGINT = int(signal.SIGINT)


class _Counters:
    """The main thread's critical sections and interrupts (one instance: an
    instance's attributes, as a class's would not, cost no type-cache flush
    per change)."""

    __slots__ = ("depth", "pending", "sent", "answered", "resent", "deliverers")

    def __init__(self):
        self.depth = 0
        self.pending = False
        self.sent = 0          # signals interrupt_main() sent
        self.answered = 0      # the value of sent when the handler last ran
        self.resent = False    # send_again() since the handler last answered
        self.deliverers = 0    # threads in deliver()


_State = _Counters()


_answer = threading.Condition()  # notified when the handler runs, for deliver()


def _handler(signum, frame):
    with _answer:  # reentrant: a handler run within this one cannot deadlock
        if _State.answered == _State.sent and _State.resent:
            # A signal sent again that came after the handler had answered
            # the first (see send_again): one interrupt, not two.
            _State.resent = False
            return
        _State.answered = _State.sent
        _State.resent = False
        if _State.deliverers:
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
    """Signal the main thread again for the interrupt not answered yet.

    The handler may have begun just before (Python clears its flag, then
    runs the handler): this signal then runs it a second time, which finds
    the interrupt answered and a signal sent again since, and drops it.
    Both sides hold _answer, so the handler either answers before this
    (and drops what follows) or after (and takes this signal with the first).
    """
    with _answer:
        _State.resent = True
        signal.pthread_kill(_main_ident, signal.SIGINT)


def deliver(first_wait=0.02, max_wait=1.0, attempts=10):
    """interrupt_main(), and again while our handler has not run: after
    first_wait, then twice as long each time up to max_wait, at most attempts
    times. For a thread that may wait (not the IO thread). False if it never ran.
    """
    with _answer:
        _State.deliverers += 1
        try:
            interrupt_main()
            wait = first_wait
            for attempt in range(1, attempts + 1):
                if _answer.wait_for(lambda: not unanswered(), wait):
                    return True
                if attempt == attempts:
                    return False
                send_again()  # the same interrupt: one KeyboardInterrupt, however many signals
                wait = min(2 * wait, max_wait)
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


_Unused = _Counters()  # for threads other than the main one: pending is never set


def section():
    """may_do_io() and `critical` in one, for a hot path (`critical` costs two
    calls, 0.4 us, per use): None when the calling thread must leave socket IO
    to another (see may_do_io), else a counter to use as below: the main
    thread's own (the handler defers while its depth is non-zero), or for
    other threads one that nothing reads.

        s.depth += 1
        ...                    # no KeyboardInterrupt in here
        s.depth -= 1
        if s.pending and not s.depth:
            interrupts.raise_pending()
    """
    if _get_ident() != _main_ident:
        return _Unused
    return _State if _signal.getsignal(_SIGINT) is _handler else None


def raise_pending():
    """End of a section(): raise the KeyboardInterrupt it held back."""
    _State.pending = False
    raise KeyboardInterrupt


_CAN_BLOCK_SIGNALS = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwait")


class ignored:
    """Context manager: SIGINT in the main thread waits until the block ends.

    Then it is dropped, or with defer=True raised as KeyboardInterrupt (unless
    an exception is on its way out already). Nested blocks leave that to the
    outermost. On POSIX the main thread blocks SIGINT meanwhile, so the
    connection's own SIGINT handler stays installed (with another handler the
    connection leaves socket IO to its IO thread, which is slower).
    For the main thread only.
    """

    def __init__(self, defer=False):
        self._defer = defer

    def __enter__(self):
        # A signal that came just before the block: its handler runs in here.
        self._was_pending = _State.pending
        _State.depth += 1
        if _CAN_BLOCK_SIGNALS:
            before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            self._outermost = signal.SIGINT not in before
        else:
            self._saved = signal.getsignal(signal.SIGINT)
            self._outermost = self._saved is not _note_ignored
            _Ignored.pending = False
            signal.signal(signal.SIGINT, _note_ignored)
        return self

    def __exit__(self, exc_type, exc, tb):
        _State.depth -= 1
        if not self._outermost:  # nested: the outer one decides
            return
        held = _State.pending and not self._was_pending
        _State.pending = self._was_pending  # an outer critical section's, if any
        if _CAN_BLOCK_SIGNALS:
            pending = signal.SIGINT in signal.sigpending()
            if pending:
                # First, so that no other is sent: sigwait lets threads run,
                # and one sent meanwhile would come after the block.
                interrupt_taken()
                signal.sigwait({signal.SIGINT})  # consume it
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        else:
            signal.signal(signal.SIGINT, self._saved)
            pending = _Ignored.pending
        if (pending or held) and self._defer and exc_type is None:
            raise KeyboardInterrupt


class _Ignored:
    pending = False  # an interrupt came while ignored (where SIGINT cannot be blocked)


def _note_ignored(signum, frame):
    _Ignored.pending = True


def redeliver_swallowed(previous=None, debug=None):
    """An unraisable-exception hook (for sys.unraisablehook) that delivers a
    KeyboardInterrupt again which Python swallowed; other reports go to previous.

    Python ignores an exception raised in __del__, a weakref callback or a
    garbage collection callback: it only reports it. A SIGINT whose handler
    runs there (garbage collection in the main thread runs such callbacks at
    any time, as for the module locks of an import in another thread) would
    be lost and the run would go on. A new thread signals the main thread
    again once it gets the interpreter lock, normally after the callback has
    returned (if not, this repeats). Signalled from here, or from a thread this
    waits for (as threading.Thread.start does), the handler would run at once,
    still inside. That signal can come before the handler has a chance to run
    and just before a blocking call (time.sleep) that it then does not stop:
    so the thread signals again until the handler ran (deliver()).
    debug, if given, is called as debug(format, *args) when one is delivered again.
    """
    import _thread
    previous = previous or sys.__unraisablehook__

    def hook(unraisable):
        if (isinstance(unraisable.exc_value, KeyboardInterrupt)
                and _get_ident() == _main_ident):
            if debug is not None:
                debug("interrupt raised where Python ignores it (in %r): delivered again",
                      unraisable.object)
            try:  # the thread ends once the handler ran, or after a few seconds
                _thread.start_new_thread(deliver, ())
            except RuntimeError:  # at interpreter shutdown: nothing left to interrupt
                pass
        else:
            previous(unraisable)

    return hook
