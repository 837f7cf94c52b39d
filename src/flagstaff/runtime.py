"""Concurrency primitives, injected so one codebase serves threads and gevent.

Stores, the follower and the client never import ``threading`` for their
background work; they take a :class:`Runtime` and ask it to spawn, make events
and locks, sleep, and tell which task they run on. :class:`ThreadRuntime` is the
default; :class:`GeventRuntime` runs the same code on greenlets (as kazoo's
handlers do).

The one deliberate exception is the SQLite store's fork gate
(``stores/sqlite.py``): it guards a file shared by processes, so it needs an OS
lock whatever the runtime, not a greenlet lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Event", "GeventRuntime", "Lock", "Runtime", "Task", "ThreadRuntime", "default_runtime"]


class Event(Protocol):
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Lock(Protocol):
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: Any) -> Any: ...


class Task(Protocol):
    def join(self, timeout: float | None = None) -> Any: ...


class Runtime(Protocol):
    """Threads or greenlets. Implementations must be safe to share across stores."""

    name: str

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str = "") -> Task: ...
    def event(self) -> Event: ...
    def lock(self) -> Lock: ...
    def sleep(self, seconds: float) -> None: ...
    def task_id(self) -> int:
        """An id of the calling task (thread or greenlet), unique among live tasks."""
        ...


class ThreadRuntime:
    """Daemon threads."""

    name = "threads"

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str = "") -> Task:
        thread = threading.Thread(target=fn, args=args, name=name or "flagstaff", daemon=True)
        thread.start()
        return thread

    def event(self) -> Event:
        return threading.Event()

    def lock(self) -> Lock:
        return threading.RLock()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def task_id(self) -> int:
        return threading.get_ident()


class GeventRuntime:
    """Greenlets (requires the ``gevent`` extra)."""

    name = "gevent"

    def __init__(self) -> None:
        import gevent
        import gevent.event
        import gevent.lock

        self._gevent = gevent
        self._event = gevent.event.Event
        self._lock = gevent.lock.RLock

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str = "") -> Task:
        task: Task = self._gevent.spawn(fn, *args)
        return task

    def event(self) -> Event:
        event: Event = self._event()
        return event

    def lock(self) -> Lock:
        lock: Lock = self._lock()
        return lock

    def sleep(self, seconds: float) -> None:
        self._gevent.sleep(seconds)

    def task_id(self) -> int:
        # What a monkey-patched threading.get_ident() answers: the current greenlet's id.
        return id(self._gevent.getcurrent())


def default_runtime() -> Runtime:
    """gevent when the process is monkey-patched by gevent, else threads."""
    try:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            return GeventRuntime()
    except ImportError:
        pass
    return ThreadRuntime()
