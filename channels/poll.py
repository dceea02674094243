"""Waiting on sockets: the one place that chooses between poll() and select().

- `Poller`: a set of sockets, each watched for reading and/or writing, waited
  on again and again (the IO thread's loop);
- `wait(read, write, timeout)`: a one-off wait on lists of sockets;
- `drain(sock)`: empty a non-blocking wake-up socket.

Timeouts are in seconds, None waits for ever. poll() takes milliseconds:
timeouts are rounded up, so a wait never ends before its deadline.
"""

import math
import select

_POLL = hasattr(select, "poll")
if _POLL:
    _IN, _OUT = select.POLLIN, select.POLLOUT
    _READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
    _WRITABLE = select.POLLOUT | select.POLLHUP | select.POLLERR
else:
    _IN, _OUT = 1, 4


def _millis(timeout):
    return None if timeout is None else math.ceil(timeout * 1000)


class Poller:
    """Sockets to wait on; set(sock, read, write) changes what is watched."""

    def __init__(self):
        self._poll = select.poll() if _POLL else None
        self._masks = {}   # fd -> (sock, mask)

    def set(self, sock, read=False, write=False):
        mask = (_IN if read else 0) | (_OUT if write else 0)
        fd = sock.fileno()
        old = self._masks.get(fd)
        if old is not None and old[1] == mask:
            return
        if mask:
            self._masks[fd] = (sock, mask)
            if self._poll is not None:
                self._poll.register(fd, mask)
        elif old is not None:
            del self._masks[fd]
            if self._poll is not None:
                self._poll.unregister(fd)

    def wait(self, timeout):
        """(readable, writable): the watched sockets ready within timeout, as sets."""
        readable, writable = set(), set()
        if self._poll is not None:
            for fd, event in self._poll.poll(_millis(timeout)):
                sock, mask = self._masks[fd]
                if mask & _IN and event & _READABLE:
                    readable.add(sock)
                if mask & _OUT and event & _WRITABLE:
                    writable.add(sock)
            return readable, writable
        socks = [sock for sock, _ in self._masks.values()]
        r, w, _ = select.select([s for s in socks if self._masks[s.fileno()][1] & _IN],
                                [s for s in socks if self._masks[s.fileno()][1] & _OUT],
                                [], timeout)
        return set(r), set(w)


def wait(read, write, timeout):
    """The sockets of read and of write that are ready within timeout, as sets."""
    poller = Poller()
    for sock in read:
        poller.set(sock, read=True, write=sock in write)
    for sock in write:
        if sock not in read:
            poller.set(sock, write=True)
    return poller.wait(timeout)


class ReadWaiter:
    """Waits until a socket is readable, or its wake socket is, or timeout
    passes: the short path of a thread that waits for its own message.

    wait() returns True when either is ready; `woken` then tells whether the
    wake socket was (it is drained).
    """

    def __init__(self, sock, wake):
        self._wake = wake
        self._wake_fd = wake.fileno()
        self.woken = False
        if _POLL:
            self._poll = select.poll()
            self._poll.register(sock, _IN)
            self._poll.register(wake, _IN)
        else:
            self._poll = None
            self._socks = [sock, wake]

    def wait(self, timeout):
        if self._poll is not None:
            events = self._poll.poll(None if timeout is None else math.ceil(timeout * 1000))
            if len(events) == 1 and events[0][0] != self._wake_fd:  # the common case: data
                self.woken = False
                return True
            self.woken = any(fd == self._wake_fd for fd, _ in events)
        else:
            events = select.select(self._socks, [], [], timeout)[0]
            self.woken = self._wake in events
        if self.woken:
            drain(self._wake)
        return bool(events)


def drain(sock):
    """Read a non-blocking wake-up socket empty."""
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, InterruptedError, OSError):
        pass
