"""Channels: up to 128 numbered message streams each way over one authenticated socket.

    from channels import Channels
    c = Channels(key=b"secret")
    port = c.host(port=0, address="127.0.0.1")   # or: c.connect(port, address, timeout)
    c.get_sending_channel(0).write("hello")       # one write, one message
    c.get_receiving_channel(0).read_one(block=1.0)

Layers, bottom up. Pure (bytes and numbers in and out, no IO, no threads):
frames (the codec), handshake, sendqueue (order, credit, batches), receiving
(window, fragments, text), liveness (heartbeats, silence). Then poll (waiting
on sockets), connection (the socket, its IO thread, who reads and who sends)
and channel (the file-like ends, which reach the connection through its Link).
errors and interrupts serve all of them.
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
