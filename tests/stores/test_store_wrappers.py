"""Wrappers run the conformance suite like any store, and keep their own promise.

:class:`ReadOnlyStore` is run over a memory store and over a SQLite database (a store
with a backend to lose): the suite writes through the wrapped store (``writer``) and
reads and watches through the wrapper.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from flagstaff.client import Client
from flagstaff.errors import StoreError
from flagstaff.stores import open_store
from flagstaff.stores.base import Store, Write, decode_raw
from flagstaff.stores.memory import MemoryStore
from flagstaff.stores.sqlite import SQLiteStore
from flagstaff.stores.wrappers import ReadOnlyStore
from flagstaff.testing.conformance import StoreConformance, document


def _wrapped(store: Store) -> Store:
    assert isinstance(store, ReadOnlyStore)
    return store.wrapped


class TestReadOnlyOverMemory(StoreConformance):
    def make_store(self, namespace: str) -> Store:
        return ReadOnlyStore(MemoryStore.from_url(f"memory://{namespace}"))

    def writer(self, store: Store) -> Store:
        return _wrapped(store)

    def force_reset(self, store: Store) -> None:
        inner = _wrapped(store)
        assert isinstance(inner, MemoryStore)
        inner.reset_watches("forced by the conformance suite")

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        _wrapped(store).put(name, decode_raw(data))


class TestReadOnlyOverSQLite(StoreConformance):
    contact_bound = 2.0  # the SQLite store's: a watch polls every 25 ms

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        (tmp_path / "db").mkdir()
        self.db = tmp_path / "db" / "flags.db"

    def make_store(self, namespace: str) -> Store:
        # Through open_store: ?readonly=1 is how an application asks for the wrapper.
        return open_store(f"sqlite:///{self.db}?namespace={namespace}&readonly=1")

    def writer(self, store: Store) -> Store:
        return _wrapped(store)

    def force_reset(self, store: Store) -> None:
        inner = _wrapped(store)
        assert isinstance(inner, SQLiteStore)
        inner.reset_watches("forced by the conformance suite")

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        inner = _wrapped(store)
        assert isinstance(inner, SQLiteStore)
        conn = sqlite3.connect(inner.path)
        with conn:
            conn.execute(
                "UPDATE flagstaff_flags SET raw = ? WHERE namespace = ? AND name = ?",
                (data, inner.namespace, name),
            )
        conn.close()

    def cut_off(self, store: Store) -> Callable[[], None]:
        away = self.db.parent.with_name("db-away")
        self.db.parent.rename(away)
        return lambda: away.rename(self.db.parent)


# ------------------------------------------------------------------ writes are refused


def test_writes_are_refused_and_reach_nothing() -> None:
    inner = MemoryStore.from_url(f"memory://ro-{uuid.uuid4().hex[:8]}")
    record = inner.put("alpha", document(1))
    store = ReadOnlyStore(inner)
    for write in (
        lambda: store.put("alpha", document(2)),
        lambda: store.put("beta", document(2), expect=0),
        lambda: store.delete("alpha"),
        lambda: store.delete("absent", expect=3),
        lambda: store.put_many([Write("alpha", document(3)), Write("beta", None)]),
    ):
        with pytest.raises(StoreError, match=r"read-only \(readonly=1\): writes are refused"):
            write()
    assert inner.get("alpha") == record and inner.get("beta") is None
    assert [e.version for e in inner.history()] == [1]
    store.close()


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE"])
def test_readonly_in_any_store_url_wraps_it(tmp_path: Path, value: str) -> None:
    for url in (f"memory://ro-{uuid.uuid4().hex[:8]}", f"sqlite:///{tmp_path}/flags.db?namespace=web"):
        sep = "&" if "?" in url else "?"
        store = open_store(f"{url}{sep}readonly={value}")
        assert isinstance(store, ReadOnlyStore)
        assert store.wrapped.url == url  # the store itself never sees the option
        assert store.url == f"{url}{sep}readonly=1"
        with pytest.raises(StoreError, match="read-only"):
            store.put("alpha", document(1))
        store.close()


def test_readonly_off_opens_the_store_itself(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/flags.db?readonly=0&namespace=web")
    assert isinstance(store, SQLiteStore) and store.namespace == "web"
    assert store.put("alpha", document(1)).version == 1
    store.close()


def test_a_client_reads_through_the_wrapper_and_its_url_says_read_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flags.db"
    writer = open_store(url)
    writer.put("alpha", '{"enabled": true, "percentage": 100}')
    with Client(f"{url}?readonly=1") as client:
        assert client.is_enabled("alpha")
        assert client.status().store_url == f"{url}?readonly=1"
    writer.close()
