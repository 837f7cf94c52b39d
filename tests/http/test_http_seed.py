"""``serve --seed``: a seed file holding segments and flags that name them (and each other)."""

from __future__ import annotations

from pathlib import Path

from flagstaff.http.cli import seed
from flagstaff.stores import open_store


def test_seeding_writes_segments_and_prerequisites_before_the_flags_naming_them(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'flags.db'}")
    documents = {
        # Sorted by name, each flag comes before what it names: the writer would refuse it.
        "a_staff_tools": {"targeting": [{"segments": ["staff"], "serve": "on"}]},
        "b_checkout_v2": {"prerequisites": ["c_checkout_v1"], "enabled": "on"},
        "c_checkout_v1": {"prerequisites": ["d_checkout"], "enabled": "on"},
        "d_checkout": "on",
        "segment:staff": {"users": ["alice"]},
    }
    try:
        created = seed(store, documents, "seed")
        assert sorted(created) == sorted(documents)
        assert set(store.load().records) == set(documents)
        # A second start seeds nothing and touches nothing.
        assert seed(store, documents, "seed") == []
    finally:
        store.close()
