"""A watch that delivers events on its own task, in order, silent after stop.

Shared by the stores whose change feed is produced in-process (memory, file,
SQLite) or fanned out to several subscribers (the ZooKeeper mirror): the
producer calls :meth:`QueueWatch.push`, a task of the runtime drains the queue
into the callback. :class:`InlineDelivery` has the same interface for stores
whose reader task serves one watch.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

from flagstaff.runtime import Runtime
from flagstaff.stores.base import WatchEvent

log = logging.getLogger("flagstaff.stores")


class QueueWatch:
    """One subscriber: a FIFO of events and the task draining it."""

    def __init__(self, runtime: Runtime, on_event: Callable[[WatchEvent], None], name: str) -> None:
        self._on_event = on_event
        self._queue: collections.deque[WatchEvent] = collections.deque()
        self._wake = runtime.event()
        self._lock = runtime.lock()  # held while a callback runs, so stop() can wait it out
        self._stopped = False
        self._task = runtime.spawn(self._run, name=name)

    def push(self, event: WatchEvent) -> None:
        if not self._stopped:
            self._queue.append(event)
            self._wake.set()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(0.5)
            self._wake.clear()
            while self._queue and not self._stopped:
                event = self._queue.popleft()
                with self._lock:
                    if self._stopped:
                        return
                    try:
                        self._on_event(event)
                    except Exception:
                        log.exception("watch callback failed on %r", event)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        # Wait for a callback in flight (unless stop() is called from inside it).
        with self._lock:
            pass


class InlineDelivery:
    """Delivers events on the producer's own task: for a store whose reader task
    serves one watch (Redis pub/sub, an etcd watch stream).

    The Store protocol asks callbacks to be quick, so handing each event to a
    second task (:class:`QueueWatch`) only adds a thread switch to every change's
    path; here the reader calls back directly. Same guarantees: in order, a
    failing callback is logged and the watch goes on, and ``stop()`` waits out a
    callback in flight (unless called from inside it), after which nothing is
    delivered.
    """

    def __init__(self, runtime: Runtime, on_event: Callable[[WatchEvent], None]) -> None:
        self._on_event = on_event
        self._runtime = runtime
        self._lock = runtime.lock()
        self._stopped = False
        self._inside: int | None = None  # the task running a callback now

    def push(self, event: WatchEvent) -> None:
        if self._stopped:
            return
        with self._lock:
            if self._stopped:
                return
            self._inside = self._runtime.task_id()
            try:
                self._on_event(event)
            except Exception:
                log.exception("watch callback failed on %r", event)
            finally:
                self._inside = None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        self._stopped = True
        if self._inside == self._runtime.task_id():
            return  # stop() from inside the callback: it is the one in flight
        with self._lock:
            pass
