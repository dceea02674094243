"""Channels: up to 128 numbered message streams each way over one authenticated socket.

    from channels import Channels
    c = Channels(key=b"secret")
    port = c.host(port=0, address="127.0.0.1")   # or: c.connect(port, address, timeout)
    c.get_sending_channel(0).write("hello")       # one write, one message
    c.get_receiving_channel(0).read_one(block=1.0)

Layers, bottom up: frames (pure codec), handshake (pure), connection (the
socket, its IO thread and the read/send roles), channel (file-like ends).
"""

from .channel import ReceivingChannel, SendingChannel
from .connection import Channels
from .errors import (AuthenticationError, ChannelsError, ConnectionClosed, MessageTooLarge,
                     ProtocolError)

__all__ = [
    "Channels", "SendingChannel", "ReceivingChannel",
    "ChannelsError", "ProtocolError", "AuthenticationError", "ConnectionClosed",
    "MessageTooLarge",
]
