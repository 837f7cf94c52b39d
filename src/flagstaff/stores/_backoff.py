"""Bounded, jittered reconnect backoff shared by the network stores.

The cap is deliberately low (one second): a store that comes back is reached
again within about a second, which is what the fleet stores promise (two
seconds from the server's return to a converged client). Client libraries'
defaults grow far beyond that (kazoo's to an hour).
"""

from __future__ import annotations

import random

from flagstaff.runtime import Event

__all__ = ["Backoff"]


class Backoff:
    """Delays of ``first``, doubling up to ``cap``, each with +-20% jitter."""

    def __init__(self, first: float = 0.05, cap: float = 1.0) -> None:
        self._first = first
        self._cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def delay(self) -> float:
        """The next delay to wait (and advance)."""
        delay = self._next * random.uniform(0.8, 1.2)
        self._next = min(self._cap, self._next * 2)
        return min(delay, self._cap)

    def wait(self, stop: Event) -> bool:
        """Sleep the next delay, waking early when ``stop`` is set; True if stopped."""
        return stop.wait(self.delay())
