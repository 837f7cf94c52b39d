"""Checks shared by the etcd and Redis store tests (not a test module itself).

:class:`Follower` does what the client does with a store: load, watch from the
loaded revision, apply changes newer than what it holds, reload on ``Reset``.
It records every value it sees per flag so tests can assert that none ever
goes backwards.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

import pytest

from flagstaff.errors import ConflictError, NotFoundError, StoreError
from flagstaff.runtime import GeventRuntime, Runtime, ThreadRuntime
from flagstaff.stores.base import Change, Reset, Store, WatchEvent

log = logging.getLogger("tests.er_checks")


def store_runtime() -> Runtime:
    """The runtime the suite runs under (``FLAGSTAFF_TEST_RUNTIME=gevent`` in the gevent re-run)."""
    return GeventRuntime() if os.environ.get("FLAGSTAFF_TEST_RUNTIME") == "gevent" else ThreadRuntime()


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> float:
    """Seconds until ``predicate()`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def doc(seq: int) -> str:
    return json.dumps({"seq": seq})


class Follower:
    """A client in miniature: a snapshot kept current by the store's watch."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.events: list[WatchEvent] = []
        self.resets = 0
        self.refused_empty = False
        self.backwards: list[str] = []
        self.values: dict[str, str] = {}
        state = store.load()
        self.revision = state.revision
        self.values = {n: r.raw for n, r in state.records.items()}
        self.watch = store.watch(self._on_event, state.revision)

    def _on_event(self, event: WatchEvent) -> None:
        with self.lock:
            self.events.append(event)
        if isinstance(event, Reset):
            self.resets += 1
            self._reload()
        elif isinstance(event, Change):
            if self.refused_empty:
                # Written through flagstaff since it came back empty: believe it again, in full.
                self._reload()
                return
            with self.lock:
                if event.revision <= self.revision:
                    return
                self.revision = event.revision
                if event.record is None:
                    self.values.pop(event.name, None)
                else:
                    self._check_forward(event.name, event.record.raw)
                    self.values[event.name] = event.record.raw

    def _reload(self) -> None:
        for _ in range(50):
            try:
                state = self.store.load()
                break
            except StoreError as exc:
                log.info("follower reload failed: %s", exc)
                time.sleep(0.1)
        else:
            return
        with self.lock:
            self.refused_empty = not state.initialized and not state.records
            if self.refused_empty:
                return  # an empty, unmarked store is not believed (what the client does)
            for name, record in state.records.items():
                self._check_forward(name, record.raw)
            self.values = {n: r.raw for n, r in state.records.items()}
            self.revision = state.revision

    def _check_forward(self, name: str, raw: str) -> None:
        old, new = self.values.get(name), raw
        try:
            if old is not None and json.loads(new)["seq"] < json.loads(old)["seq"]:
                self.backwards.append(f"{name}: {old} -> {new}")
        except (ValueError, KeyError, TypeError):
            return  # not one of ours

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.values)

    def stop(self) -> None:
        self.watch.stop()


def check_crud_and_cas(store: Store) -> None:
    assert store.get("alpha") is None
    first = store.put("alpha", doc(1), expect=0, author="ann")
    assert first.version == 1
    assert store.get("alpha") == first
    with pytest.raises(ConflictError):
        store.put("alpha", doc(2), expect=0)
    with pytest.raises(ConflictError):
        store.put("alpha", doc(2), expect=5)
    second = store.put("alpha", doc(2), expect=1)
    assert second.version == 2
    third = store.put("alpha", doc(3))
    assert third.version == 3
    with pytest.raises(ConflictError):
        store.delete("alpha", expect=2)
    store.delete("alpha", expect=3, author="bob")
    assert store.get("alpha") is None
    with pytest.raises(NotFoundError):
        store.delete("alpha")
    history = store.history("alpha")
    assert [h.after for h in history] == [None, doc(3), doc(2), doc(1)]
    assert [h.before for h in history] == [doc(3), doc(2), doc(1), None]
    assert history[0].author == "bob" and history[-1].author == "ann"
    assert [h.revision for h in history] == sorted((h.revision for h in history), reverse=True)


def check_marker(fresh: Store) -> None:
    empty = fresh.load()
    assert not empty.initialized and not empty.records
    fresh.put("beta", doc(1))
    state = fresh.load()
    assert state.initialized
    assert set(state.records) == {"beta"}  # the marker and history are not flags


def check_watch_order(store: Store, other: Store) -> None:
    base = store.load().revision
    seen: list[WatchEvent] = []
    w = store.watch(seen.append, base)
    try:
        for i in range(20):
            other.put(f"w{i % 4}", doc(i))
        other.delete("w0")
        # A store may add a Reset (etcd does when the first write initializes a prefix).
        wait_until(lambda: sum(isinstance(e, Change) for e in seen) >= 21, 5)
        changes = [e for e in seen if isinstance(e, Change)]
        assert len(changes) == 21
        revisions = [c.revision for c in changes]
        assert revisions == sorted(revisions) and len(set(revisions)) == 21
        assert revisions[0] > base
        assert changes[-1].name == "w0" and changes[-1].record is None
        assert changes[-2].record is not None and changes[-2].record.raw == doc(19)
    finally:
        w.stop()
    count = len(seen)
    other.put("w1", doc(100))
    time.sleep(0.3)
    assert len(seen) == count, "a stopped watch delivered an event"
    # Resuming from a revision delivers what happened after it.
    resumed: list[WatchEvent] = []
    w2 = store.watch(resumed.append, revisions[-2])
    try:
        wait_until(lambda: len(resumed) >= 2, 5)
        first = resumed[0]
        assert isinstance(first, Reset) or (isinstance(first, Change) and first.revision == revisions[-1])
    finally:
        w2.stop()


def mutate_many(store: Store, seq_start: int, names: list[str], deleted: list[str]) -> None:
    """50 changes and 5 deletions, as the partition test asks."""
    for i, name in enumerate(names):
        store.put(name, doc(seq_start + i))
    for name in deleted:
        store.delete(name)


def expected_after(names: list[str], deleted: list[str], seq_start: int) -> dict[str, str]:
    return {n: doc(seq_start + i) for i, n in enumerate(names) if n not in deleted}
