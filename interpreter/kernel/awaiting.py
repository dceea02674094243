"""Top-level await in the kernel: console lines and code blocks may use `await`,
`async for` and `async with` outside a function, like `python -m asyncio`.

The console compiles with COMPILE_FLAGS (ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
Python 3.8+); code that awaits at top level then compiles to a code object
flagged CO_COROUTINE, and evaluating it gives a coroutine instead of running
it. run() runs that coroutine as a task to its end on the main thread's
current asyncio event loop: the integrated one with gui "asyncio" (tasks it
started keep running between commands), else one the kernel makes current
and keeps (tasks then run while something is awaited). An interrupt cancels
the awaited task and leaves the loop usable.

Only asyncio is imported, and only when code awaits.
"""

__all__ = ["COMPILE_FLAGS", "awaits", "run", "current_loop"]

# ast.PyCF_ALLOW_TOP_LEVEL_AWAIT (0x2000 on 3.8-3.13; a test checks), without
# importing ast at start-up.
COMPILE_FLAGS = 0x2000
# inspect.CO_COROUTINE, without importing inspect at start-up.
CO_COROUTINE = 0x0080

# Seconds an interrupted task gets to handle its cancellation (its except and
# finally blocks) before the interrupt is reported; one that ignores it stays.
CANCEL_TIMEOUT = 1.0


def awaits(code):
    """Does the code object await at top level (evaluating it gives a coroutine)?"""
    return bool(code.co_flags & CO_COROUTINE)


def current_loop():
    """The main thread's current asyncio event loop; a new one made current if it has none."""
    import asyncio
    import warnings
    with warnings.catch_warnings():  # 3.12+ deprecate parts of the policy API
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        try:
            loop = policy.get_event_loop()
        except RuntimeError:  # unset, e.g. by asyncio.run()
            loop = None
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            policy.set_event_loop(loop)
    return loop


def run(code, namespace):
    """Run code that awaits at top level; returns None, or the exception it raised
    with its traceback starting at the user's code (for the console to raise and show)."""
    import asyncio
    try:
        loop = current_loop()
        if loop.is_running():
            raise RuntimeError("cannot await at top level: the event loop is running")
        coroutine = eval(code, namespace)
        task = loop.create_task(coroutine)
    except BaseException as error:
        return _from_user_frame(error, code)
    try:
        loop.run_until_complete(task)
    except KeyboardInterrupt as error:
        if not task.done():
            task.cancel()
            try:
                loop.run_until_complete(asyncio.wait([task], timeout=CANCEL_TIMEOUT))
            except BaseException:
                pass
        return _from_user_frame(error, code)
    except BaseException as error:
        return _from_user_frame(error, code)
    return None


def _from_user_frame(error, code):
    """error with its traceback cut to start at the frame running code (None if absent:
    the interrupt came in the event loop, not in the user's code)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code is not code:
        tb = tb.tb_next
    error.__traceback__ = tb
    return error
