"""The follower follows segments (records under ``segment:NAME``) in the same snapshot as
the flags: a segment change reaches the flags that use it in one swap, an invalid one
is skipped and reported under its key, the on-disk cache carries them, and listeners
are told every flag a change may reach.

The documents are parsed by stand-ins for the engine's parsers (a segment is
``{"users": [...], "holdout": bool}``; a flag named ``uses_NAME`` is on for the
members of segment ``NAME``, one named ``needs_NAME`` requires flag ``NAME``), so the
plumbing is tested apart from the engine; tests/client/test_segments_store.py runs the
real documents through a real store.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import flagstaff
from flagstaff import Context, Decision, Reason
from flagstaff.cache import CachedFlags, SnapshotCache
from flagstaff.client import Client, SnapshotChange, State
from flagstaff.document import segment_name
from flagstaff.errors import Problem, StoreUnavailable, ValidationError
from flagstaff.evaluate import evaluate
from flagstaff.model import EMPTY_ENV, Env, Flag, parse_text
from flagstaff.segments import Segment
from flagstaff.stores import Record
from flagstaff.stores.memory import MemoryStore
from flagstaff.testing import wait_until
from tests._support.client import FakeStore, unique_memory_url

pytestmark = pytest.mark.timeout(60)

ALICE = Context(user_id="alice")
BOB = Context(user_id="bob")


def fake_segment(name: str, raw: str | bytes, *, parts: object = None) -> Segment:
    doc = json.loads(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("users"), list):
        raise ValidationError([Problem("users", "must be a list of strings")], flag=name)
    members = frozenset(doc["users"])
    return Segment(
        name=segment_name(name),
        document=json.dumps(doc),
        holdout=bool(doc.get("holdout", False)),
        contains=lambda ctx: ctx.user_id in members,
    )


def fake_flag(name: str, raw: str | bytes) -> Flag:
    flag = parse_text(name, raw)
    if name.startswith("uses_"):
        used = name.removeprefix("uses_")

        def link(env: Env) -> object:
            found = env.segments.get(used)
            hit = Decision(name, True, Reason.RULE, rule="targeting[0]")
            miss = Decision(name, False, Reason.DEFAULT)
            return lambda ctx: hit if found is not None and found.contains(ctx) else miss

        return dataclasses.replace(
            flag,
            segments=frozenset({used}),
            link=link,
            run=link(EMPTY_ENV),
            constant=None,  # type: ignore[arg-type]
        )
    if name.startswith("needs_"):
        required = name.removeprefix("needs_")

        def link_required(env: Env) -> object:
            def run(ctx: Context) -> Decision:
                prerequisite = env.flags.get(required)
                if prerequisite is None or not evaluate(prerequisite, ctx).enabled:
                    return Decision(name, False, Reason.PREREQUISITE, rule=required)
                return Decision(name, True, Reason.ON)

            return run

        return dataclasses.replace(
            flag,
            requires=(required,),
            link=link_required,  # type: ignore[arg-type]
            run=link_required(EMPTY_ENV),  # type: ignore[arg-type]
            constant=None,
        )
    return flag


@pytest.fixture(autouse=True)
def stand_in_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flagstaff.follower.parse_segment_text", fake_segment)
    monkeypatch.setattr("flagstaff.follower.parse_text", fake_flag)


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore.from_url(unique_memory_url())
    yield s
    s.close()


def members(users: list[str], *, holdout: bool = False) -> str:
    return json.dumps({"users": users, "holdout": holdout})


def test_a_segment_change_reaches_its_flags_in_one_swap(store: MemoryStore) -> None:
    store.put("segment:staff", members(["bob"]))
    store.put("uses_staff", "on")
    store.put("needs_uses_staff", "on")
    store.put("plain", "on")
    with flagstaff.connect(store.url, timeout=5) as client:
        assert set(client.segments) == {"staff"}
        assert set(client.snapshot.flags) == {"uses_staff", "needs_uses_staff", "plain"}
        assert not client.is_enabled("uses_staff", ALICE)
        changes: list[SnapshotChange] = []
        client.on_change(changes.append)
        before = client.snapshot
        store.put("segment:staff", members(["alice"]))
        wait_until(lambda: client.snapshot is not before)
        after = client.snapshot
        # Both the flag and its dependent changed in that one snapshot.
        assert evaluate(after.flags["uses_staff"], ALICE).enabled
        assert evaluate(after.flags["needs_uses_staff"], ALICE).enabled
        assert not evaluate(before.flags["needs_uses_staff"], ALICE).enabled
        wait_until(lambda: changes)
        assert changes[0].names == {"segment:staff", "uses_staff", "needs_uses_staff"}
        assert [c.name for c in changes[0].changes] == ["segment:staff"]
        assert client.status().segments == 1 and client.status().flags == 3


def test_a_deleted_segment_has_no_member_and_listeners_hear_of_it(store: MemoryStore) -> None:
    store.put("segment:staff", members(["alice"]))
    store.put("uses_staff", "on")
    with flagstaff.connect(store.url, timeout=5) as client:
        assert client.is_enabled("uses_staff", ALICE)
        changes: list[SnapshotChange] = []
        client.on_change(changes.append)
        store.delete("segment:staff")
        wait_until(lambda: not client.is_enabled("uses_staff", ALICE))
        assert client.segments == {}
        wait_until(lambda: changes)
        assert changes[0].names == {"segment:staff", "uses_staff"}


def test_a_flag_change_names_the_flags_that_require_it(store: MemoryStore) -> None:
    store.put("base", "on")
    store.put("needs_base", "on")
    store.put("needs_needs_base", "on")
    with flagstaff.connect(store.url, timeout=5) as client:
        assert client.is_enabled("needs_needs_base", ALICE)
        changes: list[SnapshotChange] = []
        client.on_change(changes.append)
        store.put("base", "off")
        wait_until(lambda: not client.is_enabled("needs_needs_base", ALICE))
        assert client.evaluate("needs_needs_base", ALICE).rule == "needs_base"
        wait_until(lambda: changes)
        assert changes[0].names == {"base", "needs_base", "needs_needs_base"}


def test_an_invalid_segment_is_skipped_and_reported_under_its_key(store: MemoryStore) -> None:
    store.put("segment:staff", members(["alice"]))
    store.put("uses_staff", "on")
    with flagstaff.connect(store.url, timeout=5) as client:
        store.put("segment:staff", json.dumps({"users": "alice"}))
        wait_until(lambda: "segment:staff" in client.status().invalid)
        assert "users: must be a list" in client.status().invalid["segment:staff"]
        assert client.is_enabled("uses_staff", ALICE)  # the last good version is kept
        store.put("segment:staff", members([]))
        wait_until(lambda: not client.is_enabled("uses_staff", ALICE))
        assert client.status().invalid == {}
        # A new invalid segment is absent (no member), and counted as invalid.
        store.put("segment:broken", "[]")
        wait_until(lambda: "segment:broken" in client.status().invalid)
        assert "broken" not in client.segments


def test_an_invalid_segment_in_a_full_load(store: MemoryStore) -> None:
    store.put("segment:staff", "[]")
    store.put("segment:ok", members(["alice"]))
    with flagstaff.connect(store.url, timeout=5) as client:
        assert set(client.segments) == {"ok"}
        assert set(client.status().invalid) == {"segment:staff"}


def test_a_reload_keeps_what_did_not_change_and_names_what_did() -> None:
    fake = FakeStore(
        {
            "segment:staff": members(["bob"]),
            "segment:other": members(["bob"]),
            "uses_staff": "on",
            "uses_other": "on",
        }
    )
    with Client(fake, flagstaff.Options(timeout=5)) as client:
        changes: list[SnapshotChange] = []
        client.on_change(changes.append)
        kept = client.segments["other"]
        fake.records["segment:staff"] = Record("segment:staff", members(["alice"]), 2)
        fake.revision = 2
        client.follower.reload(timeout=5)
        assert client.is_enabled("uses_staff", ALICE)
        assert client.segments["other"] is kept
        wait_until(lambda: changes)
        assert changes[-1].reload and changes[-1].names == {"segment:staff", "uses_staff"}


def test_the_cache_carries_segments(tmp_path: Path) -> None:
    cache = tmp_path / "flags.json"
    SnapshotCache(cache).save(
        CachedFlags(
            4,
            {"uses_staff": "on", "segment:staff": members(["alice"]), "segment:bad": "[]"},
            store_url="fake://",
        )
    )
    down = FakeStore()
    down.fail = StoreUnavailable("down")
    with Client(down, flagstaff.Options(timeout=0.1, cache=cache)) as client:
        assert client.status().state is State.CACHED
        assert set(client.segments) == {"staff"}
        assert client.is_enabled("uses_staff", ALICE) and not client.is_enabled("uses_staff", BOB)


def test_the_cache_written_holds_segments_by_key(store: MemoryStore, tmp_path: Path) -> None:
    cache = tmp_path / "flags.json"
    store.put("segment:staff", members(["alice"]))
    store.put("uses_staff", "on")
    with flagstaff.connect(store.url, timeout=5, cache=cache):
        pass  # closing writes the cache
    saved = SnapshotCache(cache).load()
    assert saved is not None
    assert dict(saved.documents) == {"segment:staff": members(["alice"]), "uses_staff": "on"}


def test_a_parser_that_fails_unexpectedly_skips_one_document_only(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str, raw: str | bytes, *, parts: object = None) -> Segment:
        raise KeyError("a bug in the parser")

    monkeypatch.setattr("flagstaff.follower.parse_segment_text", broken)
    store.put("segment:staff", members(["alice"]))
    store.put("plain", "on")
    with flagstaff.connect(store.url, timeout=5) as client:
        assert client.status().state is State.LIVE
        assert client.is_enabled("plain", ALICE)
        assert "KeyError" in client.status().invalid["segment:staff"]


def test_waiting_on_a_flag_wakes_when_its_segment_changes(store: MemoryStore) -> None:
    store.put("segment:staff", members(["bob"]))
    store.put("uses_staff", "on")
    with flagstaff.connect(store.url, timeout=5) as client:
        result: list[Decision | None] = []
        waiter = threading.Thread(
            target=lambda: result.append(client.wait_for_change("uses_staff", 10, ALICE))
        )
        waiter.start()
        wait_until(lambda: "uses_staff" in client.follower._waiters)
        started = time.monotonic()
        store.put("segment:staff", members(["alice"]))
        waiter.join(15)
        assert result and result[0] is not None and result[0].enabled
        assert time.monotonic() - started < 5  # woken by the change, not by the timeout
