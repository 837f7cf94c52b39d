"""Helpers for testing flagstaff stores and code that uses flagstaff.

* :func:`wait_until` polls a condition with a deadline, so tests never sleep
  for a fixed time and never wait forever.
* :class:`EventRecorder` is a watch callback that keeps every event it is
  given, thread-safely, with waits for "n changes arrived" and friends.
* :mod:`flagstaff.testing.conformance` (imported separately, it needs pytest)
  is the suite every store runs.
* :mod:`flagstaff.testing.pytest_plugin` (entry point ``pytest11``, so pytest
  loads it): the ``flagstaff_flags`` fixture pins flags for one test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from flagstaff.stores.base import Change, Reset, WatchEvent

__all__ = ["EventRecorder", "WaitTimeout", "wait_until"]

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0


class WaitTimeout(AssertionError):
    """A bounded wait ran out. An ``AssertionError`` so pytest reports it as a failure."""


def wait_until(
    condition: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    interval: float = 0.005,
    message: str | Callable[[], str] = "",
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Gives up after ``timeout`` seconds with :class:`WaitTimeout`; ``message``
    (or a callable producing it, evaluated only on failure) says what was
    awaited. The condition is always tried once more at the deadline, so a slow
    machine never fails a wait the condition had in fact met.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            result = condition()
            if result:
                return result
            text = message() if callable(message) else message
            raise WaitTimeout(f"not true after {timeout:.1f} s: {text or condition!r}")
        time.sleep(interval)


class EventRecorder:
    """A watch callback recording every event, for assertions.

    Pass the recorder itself as ``on_event``. ``delay`` makes each callback
    sleep that long (to test that ``stop()`` waits for a callback in flight);
    ``fail_first`` makes the first callback raise (a store must keep going).
    """

    def __init__(self, *, delay: float = 0.0, fail_first: bool = False) -> None:
        self._lock = threading.Lock()
        self._events: list[WatchEvent] = []
        self._delay = delay
        self._fail_next = fail_first
        self.in_callback = False
        self.calls = 0

    def __call__(self, event: WatchEvent) -> None:
        self.in_callback = True
        try:
            with self._lock:
                self.calls += 1
                fail, self._fail_next = self._fail_next, False
            if fail:
                raise RuntimeError("EventRecorder: failing the first callback on purpose")
            if self._delay:
                time.sleep(self._delay)
            with self._lock:
                self._events.append(event)
        finally:
            self.in_callback = False

    @property
    def events(self) -> list[WatchEvent]:
        """A copy of every event received so far, in delivery order."""
        with self._lock:
            return list(self._events)

    def changes(self) -> list[Change]:
        return [e for e in self.events if isinstance(e, Change)]

    def resets(self) -> list[Reset]:
        return [e for e in self.events if isinstance(e, Reset)]

    def wait_for_events(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[WatchEvent]:
        """Wait until at least ``count`` events arrived; return them all."""
        wait_until(
            lambda: len(self.events) >= count,
            timeout,
            message=lambda: f"{count} events expected, got {self.events!r}",
        )
        return self.events

    def wait_for_changes(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Change]:
        """Wait until at least ``count`` changes arrived; return them all."""
        wait_until(
            lambda: len(self.changes()) >= count,
            timeout,
            message=lambda: f"{count} changes expected, got {self.events!r}",
        )
        return self.changes()

    def wait_for_change(
        self, predicate: Callable[[Change], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> Change:
        """Wait for a change matching ``predicate``; return the first such."""

        def find() -> Change | None:
            return next((c for c in self.changes() if predicate(c)), None)

        found = wait_until(find, timeout, message=lambda: f"no matching change in {self.events!r}")
        assert found is not None
        return found

    def wait_for_reset(self, timeout: float = DEFAULT_TIMEOUT) -> Reset:
        """Wait for a :class:`Reset`; return the first one."""
        resets = wait_until(self.resets, timeout, message=lambda: f"no Reset in {self.events!r}")
        return resets[0]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
