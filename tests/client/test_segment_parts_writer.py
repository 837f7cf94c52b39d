"""The writer and the follower with segments stored in parts (:mod:`flagstaff.parts`).

The part size is lowered (``PART_BYTES`` patched) so that a few hundred ids make several
parts; tests/stores/test_segment_parts.py runs the real size on every store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from flagstaff.admin import Admin, read_documents
from flagstaff.cli import EXIT, main
from flagstaff.context import Context
from flagstaff.document import is_part_key
from flagstaff.errors import ValidationError
from flagstaff.follower import Follower
from flagstaff.http.app import create_app
from flagstaff.http.tokens import Permission
from flagstaff.parts import PARTS_KEY
from flagstaff.stores.memory import MemoryStore
from flagstaff.stores.sqlite import SQLiteStore
from tests._support.http_server import make_token

SMALL = 2048


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flagstaff.parts.PART_BYTES", SMALL)


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    yield s
    s.close()


def users(n: int, prefix: str = "u") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


def parts_of(store: MemoryStore | SQLiteStore) -> set[str]:
    return {k for k in store.load().records if is_part_key(k)}


def head(store: MemoryStore | SQLiteStore, name: str = "segment:big") -> dict[str, object]:
    record = store.get(name)
    assert record is not None
    value = json.loads(record.raw)
    assert isinstance(value, dict)
    return value


def wait(check: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "not reached in time"
        time.sleep(0.01)


def test_an_edit_sees_every_member_and_old_parts_go(store: MemoryStore) -> None:
    admin = Admin(store, author="t")
    admin.set("segment:big", {"users": users(600)})
    first = parts_of(store)
    assert len(first) >= 3
    admin.add_members("segment:big", "users", ["newcomer"])
    after = read_documents(store)["segment:big"]
    assert after["users"] == [*users(600), "newcomer"]
    # Only the parts the new head names are left: the last part changed, the others are kept.
    listed = head(store)[PARTS_KEY]
    assert isinstance(listed, list)
    assert {k.rpartition(":")[2] for k in parts_of(store)} == set(listed)
    assert len(first & parts_of(store)) == len(first) - 1
    # The same members again change nothing.
    assert not admin.set("segment:big", {"users": [*users(600), "newcomer"]}).changed
    admin.delete("segment:big")
    assert parts_of(store) == set()


def test_rollback_needs_the_parts_of_that_version(store: MemoryStore) -> None:
    admin = Admin(store, author="t")
    admin.set("segment:big", {"users": users(600)})
    v1 = store.get("segment:big")
    assert v1 is not None
    admin.set("segment:big", {"users": users(600), "description": "same members"})
    # Version 1's parts are those of version 2: writing version 1 back works.
    assert admin.set("segment:big", json.loads(v1.raw)).changed
    assert read_documents(store)["segment:big"] == {"users": users(600)}
    admin.set("segment:big", {"users": users(600, "w")})
    with pytest.raises(ValidationError, match=r"is missing.*written back only while its parts exist"):
        admin.set("segment:big", json.loads(v1.raw))
    assert read_documents(store)["segment:big"] == {"users": users(600, "w")}  # nothing changed


def test_parts_are_written_by_the_writer_only(store: MemoryStore) -> None:
    admin = Admin(store, author="t")
    admin.set("segment:big", {"users": users(600)})
    key = sorted(parts_of(store))[0]
    with pytest.raises(ValidationError, match="write the segment, flagstaff writes its parts"):
        admin.set(key, {"part_of": "big", "users": []})
    with pytest.raises(ValidationError, match="delete or rewrite the segment"):
        admin.delete(key)
    assert key in parts_of(store)
    assert list(admin.segments()) == ["big"]
    assert list(admin.flags()) == []


def test_put_many_and_import_store_large_segments_in_parts(store: MemoryStore) -> None:
    admin = Admin(store, author="t")
    flag = {"targeting": [{"segments": ["big"], "serve": "on"}]}
    admin.put_many({"segment:big": {"users": users(600)}, "vip": flag})
    assert len(parts_of(store)) >= 3 and PARTS_KEY in head(store)
    other = MemoryStore()
    result = Admin(other, author="t").import_documents(read_documents(store), prune=True)
    assert sorted(result.created) == ["segment:big", "vip"]
    assert parts_of(other) == parts_of(store)
    assert read_documents(other) == read_documents(store)
    # Pruning never deletes a part on its own (parts are not in the documents).
    again = Admin(other, author="t").import_documents(read_documents(store), prune=True)
    assert again.deleted == () and sorted(again.unchanged) == ["segment:big", "vip"]


def test_a_part_deleted_behind_the_writer_is_reported_while_serving(store: MemoryStore) -> None:
    admin = Admin(store, author="t")
    admin.set("segment:big", {"users": users(600)})
    follower = Follower(store)
    try:
        assert follower.wait_loaded(10)
        segment = follower.snapshot.segments["big"]
        assert segment.contains(Context(user_id="u-00599"))
        gone = sorted(parts_of(store))[0]
        store.delete(gone)
        wait(lambda: "segment:big" in follower.status().invalid)
        assert gone in follower.status().invalid["segment:big"]
        assert follower.snapshot.segments["big"].contains(Context(user_id="u-00599"))
        # The next write through flagstaff puts the part back.
        admin.set("segment:big", {"users": users(600), "description": "again"})
        wait(lambda: "segment:big" not in follower.status().invalid)
        assert gone in parts_of(store)
    finally:
        follower.close()


def test_a_head_that_arrives_before_its_parts_waits_for_them(store: MemoryStore) -> None:
    scratch = MemoryStore()
    Admin(scratch, author="t").set("segment:big", {"users": users(600)})
    records = scratch.load().records
    store.put("plain", "on")
    follower = Follower(store)
    try:
        assert follower.wait_loaded(10)
        store.put("segment:big", records["segment:big"].raw)  # another route: the head first
        wait(lambda: "segment:big" in follower.status().invalid)
        assert "big" not in follower.snapshot.segments
        for key in sorted(k for k in records if is_part_key(k)):
            store.put(key, records[key].raw)
        wait(lambda: "big" in follower.snapshot.segments)
        assert follower.status().invalid == {}
        assert follower.snapshot.segments["big"].contains(Context(user_id="u-00000"))
    finally:
        follower.close()


def test_the_snapshot_cache_carries_the_parts(store: MemoryStore, tmp_path: Path) -> None:
    Admin(store, author="t").set("segment:big", {"users": users(600)})
    cache = tmp_path / "cache.json"
    first = Follower(store, cache=cache, cache_interval=0.01)
    try:
        assert first.wait_loaded(10)
        wait(cache.exists)
    finally:
        first.close()
    # A fresh, empty store (never written through flagstaff) is not believed: the cache is served.
    empty = MemoryStore()
    second = Follower(empty, cache=cache)
    try:
        segment = second.snapshot.segments["big"]
        assert segment.contains(Context(user_id="u-00599"))
        assert not segment.contains(Context(user_id="u-00600"))
    finally:
        second.close()
        empty.close()


def test_export_and_apply_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    declared = {
        "segment:big": {"description": "large", "users": users(600)},
        "vip": {"targeting": [{"segments": ["big"], "serve": "on"}]},
    }
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(declared))
    url = f"sqlite:///{tmp_path / 'flags.db'}"
    assert main(["--store", url, "apply", str(path), "--yes"]) == EXIT.OK
    store = SQLiteStore(str(tmp_path / "flags.db"))
    try:
        assert len(parts_of(store)) >= 3 and PARTS_KEY in head(store)
    finally:
        store.close()
    capsys.readouterr()
    # The store matches the file: a head is compared by its parts' digests.
    assert main(["--store", url, "apply", str(path), "--check"]) == EXIT.OK
    capsys.readouterr()
    assert main(["--store", url, "export"]) == EXIT.OK
    exported = json.loads(capsys.readouterr().out)
    assert exported == declared
    assert main(["--store", url, "segment", "list"]) == EXIT.OK
    listing = capsys.readouterr().out
    assert "big" in listing and ":part:" not in listing
    # A head is shown as stored, and is valid with its parts.
    assert main(["--store", url, "segment", "get", "big"]) == EXIT.OK
    assert PARTS_KEY in json.loads(capsys.readouterr().out)
    assert main(["--store", url, "get", "segment:big"]) == EXIT.OK
    assert main(["--store", url, "check", "segment:big", "--user", "u-00000"]) == EXIT.OK
    assert main(["--store", url, "check", "vip", "--user", "u-00599"]) == EXIT.OK
    assert main(["--store", url, "check", "vip", "--user", "stranger"]) == EXIT.NO


def test_the_http_api_and_dashboard_list_a_segment_in_parts_once(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'flags.db'}")
    state = app.state.flagstaff
    try:
        http = TestClient(
            app, headers={"Authorization": f"Bearer {make_token(state, Permission.WRITE, 'al')}"}
        )
        response = http.put(
            "/api/v1/segments/big", json={"document": {"description": "d", "users": users(600)}}
        )
        assert response.status_code in (200, 201), response.text
        assert len(parts_of(state.store)) >= 3
        listed = http.get("/api/v1/segments").json()["segments"]
        assert [s["name"] for s in listed] == ["big"] and listed[0]["valid"], listed
        assert listed[0]["description"] == "d"
        flags = http.get("/api/v1/flags").json()
        assert ":part:" not in json.dumps(flags)
        page = http.get("/segments")
        assert page.status_code == 200 and ":part:" not in page.text and "big" in page.text
        changes = http.get("/changes")
        assert changes.status_code == 200 and ":part:" not in changes.text
        # The document shown (the head) can be written back as it is: its parts exist.
        part = sorted(parts_of(state.store))[0].removeprefix("segment:")
        assert http.get(f"/api/v1/segments/{part}").status_code == 404
        assert http.get(f"/segments/{part}").status_code == 404
        head_doc = http.get("/api/v1/segments/big").json()["document"]
        assert PARTS_KEY in head_doc
        checked = http.post("/api/v1/validate", json={"name": "segment:big", "document": head_doc})
        assert checked.status_code == 200 and checked.json()["ok"], checked.text
        broken = {**head_doc, PARTS_KEY: ["0" * 20]}
        refused = http.post("/api/v1/validate", json={"name": "segment:big", "document": broken}).json()
        assert not refused["ok"] and "is missing" in json.dumps(refused["problems"])
        again = http.put("/api/v1/segments/big", json={"document": {**head_doc, "description": "e"}})
        assert again.status_code == 200, again.text
        assert read_documents(state.store)["segment:big"]["users"] == users(600)
    finally:
        state.close()


def test_a_segment_over_the_total_limit_is_refused_and_nothing_written(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flagstaff.admin.MAX_SEGMENT_BYTES", 4 * SMALL)
    monkeypatch.setattr("flagstaff.parts.MAX_SEGMENT_BYTES", 4 * SMALL)
    monkeypatch.setattr("flagstaff.segments.MAX_SEGMENT_BYTES", 4 * SMALL)
    admin = Admin(store, author="t")
    with pytest.raises(ValidationError, match="a segment may hold"):
        admin.set("segment:big", {"users": users(1000)})
    assert store.load().records == {}
