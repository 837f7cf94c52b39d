"""The validated write path: validation before writing, the kill switch, CAS retries, bulk copy."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flagstaff import edits
from flagstaff.admin import (
    Admin,
    DiffKind,
    NothingToEnable,
    default_author,
    diff_documents,
    read_documents,
)
from flagstaff.context import Context
from flagstaff.decision import Reason
from flagstaff.errors import ConflictError, NotFoundError, ValidationError
from flagstaff.evaluate import evaluate
from flagstaff.model import decode_document, parse_flag
from flagstaff.stores.base import Record
from flagstaff.stores.memory import MemoryStore


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore(f"admin-{uuid.uuid4().hex}")
    yield s
    s.close()


def doc(store: MemoryStore, name: str) -> Any:
    rec = store.get(name)
    assert rec is not None
    return decode_document(rec.raw)


def test_set_validates_before_writing(store: MemoryStore) -> None:
    admin = Admin(store, author="ann@test")
    with pytest.raises(ValidationError) as err:
        admin.set("f", {"userz": ["a"]})
    assert "userz: unknown key; did you mean 'users'?" in str(err.value)
    assert store.get("f") is None
    assert store.load().revision == 0  # nothing at all was written

    out = admin.set("f", {"users": ["a"], "description": "d"})
    assert out.changed and out.record is not None and out.record.version == 1
    assert store.history("f")[0].author == "ann@test"
    assert doc(store, "f") == {"users": ["a"], "description": "d"}


def test_set_expect_is_compare_and_set(store: MemoryStore) -> None:
    admin = Admin(store)
    admin.set("f", "on", expect=0)
    with pytest.raises(ConflictError):
        admin.set("f", "off", expect=0)
    admin.set("f", "off", expect=1)
    assert doc(store, "f") == "off"


@pytest.mark.parametrize(
    ("before", "disabled"),
    [
        ({"users": ["a"], "percentage": 5}, {"users": ["a"], "percentage": 5, "enabled": False}),
        (25, {"enabled": False, "percentage": 25}),
        ("on", {"enabled": False, "everyone": True}),
        (True, {"enabled": False, "everyone": True}),
        ("off", "off"),
        ({"enabled": "on", "users": ["a"]}, {"enabled": False, "users": ["a"]}),
    ],
)
def test_disable_is_a_kill_switch_that_keeps_the_document(
    store: MemoryStore, before: Any, disabled: Any
) -> None:
    admin = Admin(store)
    admin.set("f", before)
    admin.disable("f")
    assert doc(store, "f") == disabled
    flag = parse_flag("f", doc(store, "f"))
    for ctx in (Context(user_id="a"), Context(user_id="zz", groups=frozenset({"admin"}))):
        assert evaluate(flag, ctx).reason is Reason.OFF


def test_enable_restores_what_disable_kept(store: MemoryStore) -> None:
    admin = Admin(store)
    admin.set("obj", {"users": ["a"], "percentage": 5})
    admin.set("num", 25)
    admin.set("on", "on")
    admin.set("on_obj", {"enabled": "on", "users": ["a"]})
    for name in ("obj", "num", "on", "on_obj"):
        before = doc(store, name)
        admin.disable(name)
        admin.enable(name)
        assert doc(store, name) == before


def test_enable_without_targeting_is_refused_unless_all(store: MemoryStore) -> None:
    admin = Admin(store)
    admin.set("f", "off")
    with pytest.raises(NothingToEnable, match="enable --all"):
        admin.enable("f")
    assert doc(store, "f") == "off"
    admin.enable("f", everyone=True)
    assert doc(store, "f") == "on"

    admin.set("g", {"enabled": False, "users": ["a"]})
    admin.enable("g", everyone=True)
    assert doc(store, "g") == {"enabled": "on", "users": ["a"]}
    assert evaluate(parse_flag("g", doc(store, "g")), Context(user_id="zz")).enabled


def test_enable_of_an_enabled_flag_writes_nothing(store: MemoryStore) -> None:
    admin = Admin(store)
    admin.set("f", {"users": ["a"]})
    out = admin.enable("f")
    assert not out.changed
    assert store.get("f") == Record("f", '{"users":["a"]}', 1)


def test_set_the_same_document_again_writes_nothing(store: MemoryStore) -> None:
    admin = Admin(store)
    assert admin.set("g", "on").changed
    again = admin.set("g", "on")
    assert not again.changed
    assert again.record is not None and again.record.version == 1
    assert store.get("g") == Record("g", '"on"', 1)
    assert len(store.history("g")) == 1
    # Key order does not make a document different.
    admin.set("o", {"users": ["a"], "percentage": 5})
    assert not admin.set("o", {"percentage": 5, "users": ["a"]}).changed
    assert store.get("o") is not None and store.get("o").version == 1  # type: ignore[union-attr]
    # A stale expectation is still a conflict even when the document is the same.
    with pytest.raises(ConflictError):
        admin.set("g", "on", expect=7)
    assert not admin.set("g", "on", expect=1).changed


def test_rollout_and_add_user_refuse_a_missing_flag_unless_create(store: MemoryStore) -> None:
    admin = Admin(store)
    with pytest.raises(NotFoundError):
        admin.rollout("new", 10)
    with pytest.raises(NotFoundError):
        admin.add_user("new", "alice")
    assert store.get("new") is None
    assert store.load().revision == 0


def test_rollout_creates_and_updates(store: MemoryStore) -> None:
    admin = Admin(store)
    admin.rollout("new", 10, create=True)
    assert doc(store, "new") == 10
    admin.rollout("new", 12.5)
    assert doc(store, "new") == 12.5
    admin.set("obj", {"users": ["a"], "enabled": False})
    admin.rollout("obj", 40)
    assert doc(store, "obj") == {"users": ["a"], "enabled": False, "percentage": 40}
    with pytest.raises(ValidationError):
        admin.rollout("obj", 140)
    assert doc(store, "obj")["percentage"] == 40


def test_add_and_remove_user(store: MemoryStore) -> None:
    admin = Admin(store)
    admin.add_user("f", "alice", create=True)
    admin.add_user("f", "bob")
    admin.add_user("f", "alice")  # no duplicate
    assert doc(store, "f") == {"users": ["alice", "bob"]}
    admin.set("pct", 30)
    admin.add_user("pct", "carol")
    assert doc(store, "pct") == {"percentage": 30, "users": ["carol"]}
    admin.remove_user("f", "alice")
    admin.remove_user("f", "bob")
    assert doc(store, "f") == {}
    assert not admin.remove_user("f", "nobody").changed
    with pytest.raises(NotFoundError):
        admin.remove_user("missing", "x")


def test_delete(store: MemoryStore) -> None:
    admin = Admin(store)
    admin.set("f", "on")
    admin.delete("f")
    assert store.get("f") is None
    with pytest.raises(NotFoundError):
        admin.delete("f")


class RacingStore(MemoryStore):
    """A store where another writer adds a user between our read and our write, ``races`` times."""

    def __init__(self, name: str, races: int) -> None:
        super().__init__(name)
        self.races = races
        self.puts = 0

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        self.puts += 1
        if self.races > 0 and author != "rival":
            self.races -= 1
            current = decode_document(self.get(name).raw)  # type: ignore[union-attr]
            current.setdefault("users", []).append(f"rival{self.races}")
            super().put(name, json.dumps(current), author="rival")
        return super().put(name, raw, expect=expect, author=author)


def test_update_retries_on_conflict_and_keeps_both_changes() -> None:
    store = RacingStore(f"race-{uuid.uuid4().hex}", races=0)
    admin = Admin(store, retries=5)
    admin.set("f", {"users": ["a"]})
    store.races = 3
    out = admin.add_user("f", "me")
    assert out.changed
    users = doc(store, "f")["users"]
    assert users == ["a", "rival2", "rival1", "rival0", "me"]
    store.close()


def test_update_gives_up_after_bounded_retries() -> None:
    store = RacingStore(f"race-{uuid.uuid4().hex}", races=0)
    admin = Admin(store, retries=3)
    admin.set("f", {"users": ["a"]})
    store.races = 100
    with pytest.raises(ConflictError):
        admin.add_user("f", "me")
    assert "me" not in doc(store, "f")["users"]
    assert store.races == 100 - 3  # exactly `retries` attempts
    store.close()


def test_concurrent_updates_lose_nothing(store: MemoryStore) -> None:
    admin = Admin(store, retries=200)
    admin.set("f", {"users": []})
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            Admin(store, retries=200).add_user("f", f"u{i}")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors
    assert sorted(doc(store, "f")["users"]) == sorted(f"u{i}" for i in range(16))


def test_import_validates_everything_first(store: MemoryStore) -> None:
    admin = Admin(store)
    with pytest.raises(ValidationError) as err:
        admin.import_documents({"good": "on", "bad": {"percentage": 200}, "worse": "maybe"})
    text = str(err.value)
    assert "bad: percentage: must be a number between 0 and 100" in text
    assert "worse: a string flag must be 'on' or 'off'" in text
    assert store.load().records == {}


def test_import_export_round_trip_between_stores(store: MemoryStore) -> None:
    docs = {
        "a": "on",
        "b": 12.5,
        "c": {"users": ["x"], "description": "ünïcode"},
        "d": {"experiment": {"loggedin": True, "variants": {"t": 10}}},
    }
    progress: list[tuple[int, int]] = []
    first = Admin(store).import_documents(docs, progress=lambda d, t: progress.append((d, t)))
    assert sorted(first.created) == ["a", "b", "c", "d"]
    assert progress[-1] == (4, 4)
    other = MemoryStore(f"other-{uuid.uuid4().hex}")
    Admin(other).import_documents(read_documents(store))
    assert read_documents(other) == docs
    assert {n: r.raw for n, r in other.load().records.items()} == {
        n: r.raw for n, r in store.load().records.items()
    }
    again = Admin(other).import_documents(read_documents(store))
    assert again.unchanged == ("a", "b", "c", "d") and not again.created and not again.updated
    revision = other.load().revision
    Admin(other).import_documents({"a": "off"}, prune=True)
    assert read_documents(other) == {"a": "off"}
    assert other.load().revision == revision + 4  # one update, three deletes
    other.close()


def test_diff_documents() -> None:
    left = {"same": {"a": 1, "b": 2}, "gone": "on", "changed": 5}
    right = {"same": {"b": 2, "a": 1}, "new": "off", "changed": 6}
    entries = {e.name: e for e in diff_documents(left, right)}
    assert set(entries) == {"gone", "new", "changed"}
    assert entries["gone"].kind is DiffKind.REMOVED
    assert entries["new"].kind is DiffKind.ADDED
    assert (entries["changed"].left, entries["changed"].right) == (5, 6)


def test_default_author_is_user_at_host() -> None:
    user, _, host = default_author().partition("@")
    assert user and host


def test_creating_a_flag_checks_the_new_name_rule_and_look_alikes(store: MemoryStore) -> None:
    admin = Admin(store, author="ann@test")
    admin.set("new_checkout", "on")
    for write in (
        lambda: admin.set("New-Checkout", "off"),
        lambda: admin.rollout("new.checkout", 10, create=True),
        lambda: admin.add_user("NEW_CHECKOUT", "erin", create=True),
        lambda: admin.set("flag\u200b", "on"),
    ):
        with pytest.raises(ValidationError):
            write()
    assert sorted(store.load().records) == ["new_checkout"]
    assert store.load().revision == 1
    # A flag already stored under a name outside the alphabet is still edited in place.
    store.put("legacy:name", '"on"')
    assert admin.rollout("legacy:name", 5).changed
    assert admin.set("new_checkout", "off").changed


# --------------------------------------------------------------------------- edits


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, {"users": ["bob"]}),
        ("off", {"users": ["bob"]}),
        (False, {"users": ["bob"]}),
        ("on", {"enabled": "on", "users": ["bob"]}),
        (True, {"enabled": "on", "users": ["bob"]}),
        (0, {"percentage": 0, "users": ["bob"]}),
        # 1 == True in Python: a 1% flag must stay a 1% flag, not become "on" for everyone.
        (1, {"percentage": 1, "users": ["bob"]}),
        (25, {"percentage": 25, "users": ["bob"]}),
        ({"users": ["ann", "bob"]}, {"users": ["ann", "bob"]}),
    ],
)
def test_add_members_keeps_what_the_document_targets(before: Any, after: Any) -> None:
    assert edits.add_members(before, "users", ["bob"]) == after


def test_enable_leaves_a_bare_percentage_as_it_is() -> None:
    assert edits.enable(1) == 1
    assert edits.enable(1.0) == 1.0
    assert edits.enable(True) == "on"
    assert edits.enable(False) == "off"
    assert edits.enable(1, everyone=True) == "on"


def test_edits_never_mutate_their_input() -> None:
    original = {"users": ["ann"], "groups": ["staff"], "experiment": {"variants": {"a": 50, "b": 50}}}
    snapshot = json.loads(json.dumps(original))
    edits.kill(original)
    edits.enable(original, everyone=True)
    edits.set_percentage(original, 10)
    edits.add_members(original, "users", ["bob"])
    edits.remove_members(original, "users", ["ann"])
    edits.set_variants(original, {"a": 10, "b": 90})
    edits.as_object(original)
    assert original == snapshot


def test_remove_members_drops_the_key_when_the_list_empties() -> None:
    assert edits.remove_members({"users": ["ann"], "percentage": 5}, "users", ["ann"]) == {"percentage": 5}
    assert edits.remove_members("on", "users", ["ann"]) == "on"  # nothing to remove from


def test_a_one_percent_flag_stays_one_percent_through_add_user_and_enable(store: MemoryStore) -> None:
    admin = Admin(store, author="ann@test")
    admin.set("f", 1)
    admin.add_user("f", "bob")
    assert doc(store, "f") == {"percentage": 1, "users": ["bob"]}
    admin.set("g", 1)
    assert admin.enable("g").changed is False
    assert doc(store, "g") == 1


def test_add_members_and_set_variants_through_admin(store: MemoryStore) -> None:
    admin = Admin(store, author="ann@test")
    admin.set("f", 30)
    admin.add_members("f", "groups", ["staff", "beta"])
    admin.set_variants("f", {"a": 20, "b": 20})
    assert doc(store, "f") == {
        "percentage": 30,
        "groups": ["staff", "beta"],
        "experiment": {"everyone": True, "variants": {"a": 20, "b": 20}},
    }
    assert admin.remove_members("f", "groups", ["staff", "beta"]).changed is True
    assert "groups" not in doc(store, "f")
