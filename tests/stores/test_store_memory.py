"""The memory store runs the conformance suite, plus its own specifics."""

from __future__ import annotations

import os
import uuid

from flagstaff.stores import open_store
from flagstaff.stores.base import Reset, Store, decode_raw
from flagstaff.stores.memory import MemoryStore
from flagstaff.testing import EventRecorder
from flagstaff.testing.conformance import StoreConformance, document


class TestMemoryStore(StoreConformance):
    def make_store(self, namespace: str) -> Store:
        store = MemoryStore.from_url(f"memory://{namespace}")
        # Under tests/_support/gevent_run.py the stores must be running on greenlets.
        assert store._runtime.name == os.environ.get("FLAGSTAFF_EXPECT_RUNTIME", "threads")
        return store

    def force_reset(self, store: Store) -> None:
        assert isinstance(store, MemoryStore)
        store.reset_watches("forced by the conformance suite")

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        # Nothing but flagstaff writes a memory store: its put() takes any text, as is.
        store.put(name, decode_raw(data))


def test_private_memory_stores_are_separate() -> None:
    one, two = MemoryStore(), MemoryStore()
    one.put("alpha", document(1))
    assert two.get("alpha") is None
    one.close()
    two.close()


def test_open_store_picks_memory() -> None:
    name = f"m-{uuid.uuid4().hex[:8]}"
    store = open_store(f"memory://{name}")
    assert isinstance(store, MemoryStore)
    assert store.url == f"memory://{name}"
    store.close()


def test_watch_from_a_future_revision_resets() -> None:
    store = MemoryStore()
    store.put("alpha", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision + 10)
    assert isinstance(recorder.wait_for_events(1)[0], Reset)
    store.close()
