"""Helpers for the client tests: a scriptable fake store and bounded waiting.

The fake is for unit tests only (it lets a test deliver any event, make the
store fail or block); the memory store is used wherever a real store will do.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from types import MappingProxyType

from flagstaff.errors import StoreUnavailable
from flagstaff.stores import HistoryEntry, Record, StoreState, WatchEvent, Write


def expected_runtime() -> str | None:
    """Set by tests/_support/gevent_run.py so the same tests prove they ran on greenlets."""
    return os.environ.get("FLAGSTAFF_EXPECT_RUNTIME")


def unique_memory_url() -> str:
    return f"memory://client-test-{uuid.uuid4().hex}"


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


class FakeWatch:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


class FakeStore:
    """A store whose loads and events the test controls."""

    url = "fake://"

    def __init__(self, records: dict[str, str] | None = None, revision: int = 1) -> None:
        self.records = {n: Record(n, raw, 1) for n, raw in (records or {}).items()}
        self.revision = revision
        self.initialized = True
        self.fail: Exception | None = None
        self.block_seconds = 0.0
        self.loads = 0
        self.on_event: Callable[[WatchEvent], None] | None = None
        self.watches: list[FakeWatch] = []
        self.closed = False

    def load(self) -> StoreState:
        self.loads += 1
        if self.block_seconds:
            time.sleep(self.block_seconds)
        if self.fail is not None:
            raise self.fail
        return StoreState(self.revision, MappingProxyType(dict(self.records)), self.initialized)

    def get(self, name: str) -> Record | None:
        return self.records.get(name)

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        raise StoreUnavailable("the fake store is read-only")

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        raise StoreUnavailable("the fake store is read-only")

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        raise StoreUnavailable("the fake store is read-only")

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> FakeWatch:
        self.on_event = on_event
        watch = FakeWatch(self)
        self.watches.append(watch)
        return watch

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        return []

    def close(self) -> None:
        self.closed = True

    def emit(self, event: WatchEvent) -> None:
        assert self.on_event is not None, "no watch yet"
        self.on_event(event)


class FlakyStore(FakeStore):
    """Opened by URL (``flaky://``): refuses to open while ``FlakyStore.down`` is true."""

    down = True
    opened: list[FlakyStore] = []

    @classmethod
    def from_url(cls, url: str, runtime: object = None) -> FlakyStore:
        if cls.down:
            raise StoreUnavailable(f"{url} is down")
        store = cls({"f": "on"}, revision=2)
        store.url = url
        cls.opened.append(store)
        return store
