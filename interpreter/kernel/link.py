"""One connected client as the kernel sees it: its Channels and the channels used on it."""

from channels import ChannelsError

from ..protocol import FromKernel, ToKernel
from .debug import debug

__all__ = ["ClientLink"]

# Seconds close() may take to deliver the last output and the exit status.
CLOSE_TIMEOUT = 5.0


class ClientLink:
    """One connected client: its Channels and the channels the kernel uses on it.

    The kernel keeps a list of links: output and status go to every link.
    (Today there is one; several clients of one kernel come next.)
    """

    def __init__(self, channels):
        self.channels = channels
        self.stdin = channels.get_receiving_channel(ToKernel.STDIN)
        self.control = channels.get_receiving_channel(ToKernel.CONTROL)
        self.requests = channels.get_receiving_channel(ToKernel.INTROSPECT)
        self._senders = {index: channels.get_sending_channel(index) for index in FromKernel}

    def send(self, index, text):
        """Write one message on sending channel index; dropped if the connection is gone."""
        try:
            self._senders[index].write(text)
        except (ValueError, OSError, ChannelsError):
            pass

    @property
    def max_message(self):
        """The largest message (bytes) the client accepts, from its handshake."""
        return self.channels.peer_max_message_size

    def idle(self, index):
        """Has everything sent on index been handed to the OS? (never waits)

        A write on an idle channel cannot block: a write blocks only once a
        window (8 MiB) of the channel's messages waits unsent.
        """
        try:
            self._senders[index].flush(timeout=0)
        except TimeoutError:
            return False
        except (ValueError, OSError, ChannelsError):
            pass   # the connection is gone: writes are dropped at once
        return True

    def flush(self, index):
        """Wait until what was sent on index is handed to the OS (not if the connection is gone)."""
        try:
            self._senders[index].flush()
        except (ValueError, OSError, ChannelsError):
            pass

    def close(self):
        try:
            self.channels.close(timeout=CLOSE_TIMEOUT)
        except Exception as error:
            debug("closing the connection failed: %r", error)
