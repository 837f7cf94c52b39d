"""The file store: conformance suite (JSON and YAML), hand edits, URL forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from flagstaff.stores.base import Store
from flagstaff.stores.file import FileStore
from flagstaff.testing.conformance import StoreConformance


class TestFileStore(StoreConformance):
    keeps_raw_text = False
    suffix = ".json"

    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def make_store(self, namespace: str) -> Store:
        return FileStore.from_url(f"file://{self.dir / namespace}{self.suffix}?poll=0.02")

    def force_reset(self, store: Store) -> None:
        # Losing the sidecar loses the revision lineage: watches must reset.
        assert isinstance(store, FileStore)
        Path(store.path).parent.joinpath(f".{Path(store.path).name}.flagstaff-meta.json").unlink()


class TestYamlFileStore(TestFileStore):
    suffix = ".yaml"
