"""The errors of the channels package: one small tree under ChannelsError.

Wrong use of the API raises the usual Python errors (TypeError, ValueError);
what the peer or the network did raises one of these.
"""


class ChannelsError(Exception):
    """Base class of every error this package raises about the connection."""


class ProtocolError(ChannelsError):
    """The peer sent bytes that break the wire format; the connection is closed."""


class AuthenticationError(ChannelsError):
    """The handshake failed: a wrong key or a peer that is not a channels peer."""


class ConnectionClosed(ChannelsError, ConnectionError):
    """The connection has ended; the message says why."""


class MessageTooLarge(ChannelsError, ValueError):
    """A message is larger than the peer accepts (see Channels.max_message_size)."""
