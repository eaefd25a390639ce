"""Stopping a process that delivers mail without cutting a delivery short.

A forward cut between the reinjection's 250 and its answer to Postfix (or
its record) is sent again on Postfix's retry: a second copy. So a stopping
process first stops taking new deliveries (a client starting one is told
to come back: 421 or 4xx, Postfix retries), then waits for those in
progress to be answered, within a bound, and only then exits. One per
process (DRAIN): the daemon's pipe and LMTP listeners and an LMTP worker's
use it alike.
"""
from __future__ import annotations

import contextlib
import threading
import time

GRACE = 30.0     # seconds a stopping process waits for deliveries in progress


class Draining:
    def __init__(self):
        self.stopping = threading.Event()
        self._busy = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def delivery(self):
        """Around a delivery and its answer; check `stopping` inside it."""
        with self._changed:
            self._busy += 1
        try:
            yield
        finally:
            with self._changed:
                self._busy -= 1
                self._changed.notify_all()

    def stop(self, grace: float = GRACE) -> int:
        """Take no new deliveries; wait for those in progress, at most
        `grace` seconds. How many were still running then."""
        self.stopping.set()
        until = time.monotonic() + grace
        with self._changed:
            while self._busy and time.monotonic() < until:
                self._changed.wait(until - time.monotonic())
            return self._busy


DRAIN = Draining()
