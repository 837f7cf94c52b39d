"""``memory://[name]``: flags in this process's memory.

``memory://`` alone gives a private, empty store. ``memory://NAME`` is shared by
every client in the process that opens the same name, which makes it handy in
tests; different names are isolated namespaces.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from types import MappingProxyType

from flagstaff.errors import ConflictError, NotFoundError
from flagstaff.runtime import Runtime, default_runtime
from flagstaff.stores._dispatch import QueueWatch
from flagstaff.stores.base import (
    Change,
    HistoryEntry,
    Record,
    Reset,
    StoreState,
    Watch,
    WatchEvent,
    Write,
    check_writes,
)

__all__ = ["MemoryStore"]

_HISTORY_LIMIT = 10_000


class _Space:
    """The shared state behind one memory namespace."""

    def __init__(self, runtime: Runtime) -> None:
        self.lock = runtime.lock()
        self.records: dict[str, Record] = {}
        self.revision = 0
        self.initialized = False
        self.log: list[Change] = []
        self.history: list[HistoryEntry] = []
        self.watches: weakref.WeakSet[QueueWatch] = weakref.WeakSet()


_SPACES: dict[str, _Space] = {}


class MemoryStore:
    """A store in process memory. Thread-safe; history kept (bounded)."""

    def __init__(self, name: str = "", *, runtime: Runtime | None = None) -> None:
        self.url = f"memory://{name}"
        self._runtime = runtime or default_runtime()
        if name:
            # dict.setdefault with a str key is one atomic step under the GIL (no lock needed):
            # two stores opening the same name at once get the same space.
            self._space = _SPACES.setdefault(name, _Space(self._runtime))
        else:
            self._space = _Space(self._runtime)
        self._closed = False
        self._own: list[QueueWatch] = []

    @classmethod
    def from_url(cls, url: str, runtime: Runtime | None = None) -> MemoryStore:
        return cls(url.removeprefix("memory://").strip("/"), runtime=runtime)

    def load(self) -> StoreState:
        s = self._space
        with s.lock:
            return StoreState(s.revision, MappingProxyType(dict(s.records)), s.initialized)

    def get(self, name: str) -> Record | None:
        return self._space.records.get(name)

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        s = self._space
        with s.lock:
            old = s.records.get(name)
            _check(name, expect, old)
            record = Record(name, raw, (old.version if old else 0) + 1)
            s.records[name] = record
            self._commit(name, old, record, author)
            return record

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        s = self._space
        with s.lock:
            old = s.records.get(name)
            if old is None:
                raise NotFoundError(name)
            _check(name, expect, old)
            del s.records[name]
            self._commit(name, old, None, author)

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        check_writes(writes)
        s = self._space
        with s.lock:
            olds = [s.records.get(w.name) for w in writes]
            for write, old in zip(writes, olds, strict=True):  # every check before any change
                if write.raw is None and old is None:
                    raise NotFoundError(write.name)
                _check(write.name, write.expect, old)
            out: list[Record | None] = []
            for i, (write, old) in enumerate(zip(writes, olds, strict=True)):
                record = (
                    None
                    if write.raw is None
                    else Record(write.name, write.raw, (old.version if old else 0) + 1)
                )
                if record is None:
                    del s.records[write.name]
                else:
                    s.records[write.name] = record
                self._commit(write.name, old, record, author, more=len(writes) - 1 - i)
                out.append(record)
            return out

    def _commit(
        self, name: str, old: Record | None, new: Record | None, author: str | None, *, more: int = 0
    ) -> None:
        s = self._space
        s.revision += 1
        s.initialized = True
        change = Change(name, new, s.revision, more)
        s.log.append(change)
        del s.log[:-_HISTORY_LIMIT]
        s.history.append(
            HistoryEntry(
                name,
                s.revision,
                new.version if new else None,
                time.time(),
                author,
                old.raw if old else None,
                new.raw if new else None,
            )
        )
        del s.history[:-_HISTORY_LIMIT]
        for watch in list(s.watches):
            watch.push(change)

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        s = self._space
        with s.lock:
            w = QueueWatch(self._runtime, on_event, "flagstaff-memory-watch")
            missed = [c for c in s.log if c.revision > since]
            if since > s.revision:
                w.push(Reset(f"revision {since} is newer than this store's ({s.revision})"))
            elif missed and missed[0].revision != since + 1:
                w.push(Reset("changes older than the kept log were missed"))
            else:
                for change in missed:
                    w.push(change)
            s.watches.add(w)
            self._own.append(w)
            return w

    def reset_watches(self, reason: str = "reset requested") -> None:
        """Make every open watch on this namespace deliver :class:`Reset`, as a
        lost notification would (for tests of code that follows a store)."""
        s = self._space
        with s.lock:
            for watch in list(s.watches):
                watch.push(Reset(reason))

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        with self._space.lock:
            entries = [h for h in reversed(self._space.history) if name is None or h.name == name]
        return entries[:limit]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self._own:
            w.stop()
        self._own.clear()


def _check(name: str, expect: int | None, old: Record | None) -> None:
    if expect is None:
        return
    actual = old.version if old else 0
    if actual != expect:
        raise ConflictError(name, expect, actual)
