"""Liveness: heartbeats out, silence in. Pure: the caller passes the time.

The connection sends a PING when it has sent nothing for one heartbeat
interval; the peer answers with a PONG, so a live peer is never silent for
long. A peer silent for MISSED_HEARTBEATS intervals is *unresponsive* (never
closed for it: it may hold its GIL in C code); hearing from it again makes it
*connected*. With a dead_timeout, a peer silent that long is *dead*.

    liveness = Liveness(interval, dead_timeout, now)
    liveness.sent(now); liveness.heard(now)       # after each send / receive
    frames, state, deadline = liveness.tick(now)  # send frames; look again at deadline
"""

import itertools

from .frames import encode_ping

CONNECTED, UNRESPONSIVE, DEAD = "connected", "unresponsive", "dead"
# Heartbeats missed before the peer counts as unresponsive.
MISSED_HEARTBEATS = 3


class Liveness:
    def __init__(self, interval, dead_timeout, now):
        if not interval > 0:
            raise ValueError("heartbeat_interval must be positive")
        if dead_timeout is not None and dead_timeout < MISSED_HEARTBEATS * interval:
            raise ValueError("dead_timeout must be at least %d heartbeat intervals"
                             % MISSED_HEARTBEATS)
        self.interval = float(interval)
        self.dead_timeout = dead_timeout
        self.state = CONNECTED
        self.last_sent = self.last_heard = now
        self._pings = itertools.count(1)

    def sent(self, now):
        """Something went out at now."""
        self.last_sent = now

    def heard(self, now):
        """Something came in at now. Returns the state (an unresponsive peer is connected again)."""
        self.last_heard = now
        if self.state == UNRESPONSIVE:
            self.state = CONNECTED
        return self.state

    def silence(self, now):
        return now - self.last_heard

    def tick(self, now):
        """(frames to send, state, time of the next tick)."""
        frames = []
        if now - self.last_sent >= self.interval:
            frames.append(encode_ping(next(self._pings)))
            self.last_sent = now
        silent = now - self.last_heard
        limit = MISSED_HEARTBEATS * self.interval
        if self.state == CONNECTED and silent > limit:
            self.state = UNRESPONSIVE
        if self.dead_timeout is not None and silent > self.dead_timeout:
            self.state = DEAD
            return frames, DEAD, now
        due = [self.last_sent + self.interval]
        if self.state == CONNECTED:
            due.append(self.last_heard + limit)
        if self.dead_timeout is not None:
            due.append(self.last_heard + self.dead_timeout)
        return frames, self.state, min(due)
