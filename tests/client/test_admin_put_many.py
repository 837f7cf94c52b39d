"""Admin.put_many: every document validated before one atomic write; all or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from flagstaff.admin import Admin
from flagstaff.errors import ConflictError, ValidationError
from flagstaff.stores.memory import MemoryStore


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore(f"admin-many-{uuid.uuid4().hex}")
    yield s
    s.close()


def test_every_document_is_validated_before_anything_is_written(store: MemoryStore) -> None:
    admin = Admin(store, author="tester")
    admin.set("checkout", {"enabled": True, "percentage": 10})
    before = store.load()
    with pytest.raises(ValidationError) as info:
        admin.put_many(
            {
                "checkout": {"enabled": True, "percentage": 500},  # issue 17: was stored as is
                "search": {"enabled": True, "percentage": 20},
                "banner": {"enabled": True, "segments_typo": 1, "targeting": [{"segments": ["nope"]}]},
            }
        )
    text = str(info.value)
    assert "checkout" in text and "percentage" in text
    assert "banner" in text
    assert store.load() == before
    assert store.get("search") is None


def test_one_atomic_write_with_segments_and_deletes(store: MemoryStore) -> None:
    admin = Admin(store, author="tester")
    admin.set("old", {"enabled": True})
    admin.set("same", {"enabled": True, "percentage": 5})
    revision = store.load().revision
    outcomes = admin.put_many(
        {
            "segment:beta": {"users": ["u1"]},
            "uses-beta": {"enabled": True, "targeting": [{"segments": ["beta"], "serve": "on"}]},
            "same": {"enabled": True, "percentage": 5},
        },
        delete=["old"],
    )
    assert [(o.name, o.changed) for o in outcomes] == [
        ("segment:beta", True),
        ("uses-beta", True),
        ("same", False),
        ("old", True),
    ]
    assert outcomes[0].record is not None and outcomes[0].record.version == 1
    assert outcomes[3].after is None and store.get("old") is None
    entries = store.history(limit=10)
    assert {e.name for e in entries[:3]} == {"segment:beta", "uses-beta", "old"}
    assert {e.author for e in entries[:3]} == {"tester"}
    assert store.load().revision == revision + 3  # "same" was not rewritten


def test_deleting_what_a_kept_flag_names_is_refused_unless_forced(store: MemoryStore) -> None:
    admin = Admin(store)
    admin.set("segment:beta", {"users": ["u1"]})
    admin.set("uses-beta", {"enabled": True, "targeting": [{"segments": ["beta"], "serve": "on"}]})
    with pytest.raises(ValidationError, match="still name it"):
        admin.put_many({}, delete=["segment:beta"])
    assert store.get("segment:beta") is not None
    with pytest.raises(ValidationError, match="cannot delete"):
        admin.put_many({}, delete=["absent"])
    with pytest.raises(ValidationError, match="both written and deleted"):
        admin.put_many({"uses-beta": {"enabled": False}}, delete=["uses-beta"])
    admin.put_many({}, delete=["segment:beta"], force=True)
    assert store.get("segment:beta") is None


def test_a_change_since_the_read_is_a_conflict_and_writes_nothing(store: MemoryStore) -> None:
    admin = Admin(store)
    first = admin.set("a", {"enabled": True}).record
    assert first is not None
    admin.set("a", {"enabled": False})
    before = store.load()
    with pytest.raises(ConflictError) as info:
        admin.put_many({"a": {"enabled": True}, "b": {"enabled": True}}, expect={"a": first.version})
    assert info.value.name == "a"
    assert store.load() == before
