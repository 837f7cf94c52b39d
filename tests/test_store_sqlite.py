"""The SQLite store: conformance suite, URL forms, schema, locking, multi-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from flagstaff.stores.base import Store
from flagstaff.stores.sqlite import SQLiteStore
from flagstaff.testing.conformance import StoreConformance


class TestSQLiteStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.db = tmp_path / "flags.db"

    def make_store(self, namespace: str) -> Store:
        return SQLiteStore.from_url(f"sqlite:///{self.db}?namespace={namespace}")

    def force_reset(self, store: Store) -> None:
        assert isinstance(store, SQLiteStore)
        store.reset_watches("forced by the conformance suite")
