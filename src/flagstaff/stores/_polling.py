"""A watch that polls: the file store's and the SQLite store's, written once.

A :class:`PollingWatch` owns the subscriber's queue (a
:class:`~flagstaff.stores._dispatch.QueueWatch`: events are delivered in the order
they are pushed, on a task of their own), one task calling :meth:`PollingWatch._step`
until the watch stops, and an event that cuts the pause between two steps short
(:meth:`PollingWatch.kick`, called by the store after its own writes). A subclass
writes only its step: read what changed, push it, and say how long to wait before
looking again. ``stop()`` is silent (the queue delivers nothing once it returns) and
takes the watch off its store's list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flagstaff.runtime import Runtime, Task
from flagstaff.stores._dispatch import QueueWatch
from flagstaff.stores.base import WatchEvent

__all__ = ["PollingWatch"]

log = logging.getLogger("flagstaff.stores")

_AFTER_BUG = 0.5  # seconds before polling again after a step raised what it did not foresee


class PollingWatch:
    """One subscriber of a polled store (see the module doc).

    The subclass sets up its own state after calling ``__init__`` and then calls
    :meth:`_start`, so the task never runs a step on a half-built watch.
    """

    def __init__(
        self,
        runtime: Runtime,
        on_event: Callable[[WatchEvent], None],
        name: str,
        forget: Callable[[PollingWatch], None],
    ) -> None:
        """``name``: the tasks are named ``flagstaff-<name>-watch`` (the queue) and ``task``;
        ``forget``: the store's function taking a stopped watch off its list."""
        self._runtime = runtime
        self._queue = QueueWatch(runtime, on_event, f"flagstaff-{name}-watch")
        self._wake = runtime.event()
        self._stopped = False
        self._forget = forget
        self._task: Task | None = None

    def _start(self, task_name: str) -> None:
        self._task = self._runtime.spawn(self._run, name=task_name)

    def kick(self) -> None:
        """Look again now rather than after the pause (the store has just written)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._queue.stop()
        self._wake.set()
        self._forget(self)

    def _run(self) -> None:
        try:
            while not self._stopped:
                try:
                    pause = self._step()
                except Exception:
                    # A step's own errors are the subclass's to handle (they become Disconnected
                    # and a Reset); anything else is a bug, logged, and the watch goes on polling
                    # rather than end silently with the subscriber believing it is followed.
                    log.exception("a %s watch step failed; polling again", type(self).__name__)
                    pause = _AFTER_BUG
                self._wake.wait(pause)
        finally:
            self._finish()

    def _step(self) -> float:
        """Poll once and push what changed; return the seconds to wait before the next poll
        (:meth:`kick` cuts the wait short; clearing the wake-up is the step's to decide)."""
        raise NotImplementedError

    def _finish(self) -> None:
        """Release what the steps held (the task is ending)."""
