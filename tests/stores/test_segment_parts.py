"""Segments stored in parts (issue 17) on every store, against real servers.

Each store (memory, SQLite, the file store, ZooKeeper, etcd, Redis, PostgreSQL) runs:

- a 3-part segment (120,000 ids, about 1.6 MB, parts of the real 512 KiB) written through
  the writer, read back by a follower that was watching and by one that loads afresh, and
  a flag naming it evaluated for members and strangers;
- the member list replaced while a follower watches: every snapshot it serves holds the
  old list or the new one, never a mix (sampled continuously during the write);
- a head naming a part that is missing (written by another route): the segment keeps its
  last good version and ``status()`` names the part; a good write makes it valid again.

The 1,000,000-member case runs on SQLite, ZooKeeper and etcd (the default store, and the
two whose request limits a single document of a million ids would break).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from flagstaff import evaluate
from flagstaff.admin import Admin, read_documents
from flagstaff.context import Context
from flagstaff.document import is_part_key
from flagstaff.follower import Follower
from flagstaff.parts import PART_BYTES, PARTS_KEY
from flagstaff.stores import open_store
from flagstaff.stores.base import Store
from tests._support.fleet_backends import Backend

pytestmark = pytest.mark.timeout(600)

KINDS = ("memory", "sqlite", "file", "zookeeper", "etcd", "redis", "postgres")
MILLION_ON = ("sqlite", "zookeeper", "etcd")
FLAG = {"targeting": [{"name": "big", "segments": ["big"], "serve": {"variant": "on"}}]}


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> Iterator[tuple[str, Callable[[], str]]]:
    """The store kind, and a function giving the URL of a fresh namespace on it."""
    name = str(request.param)
    if name in ("memory", "sqlite", "file"):
        with tempfile.TemporaryDirectory(prefix="flagstaff-parts-") as tmp:

            def local() -> str:
                ns = uuid.uuid4().hex[:8]
                if name == "memory":
                    return f"memory://parts-{ns}"
                if name == "sqlite":
                    return f"sqlite:///{tmp}/{ns}.db"
                return f"file://{tmp}/{ns}.json"

            yield name, local
        return
    backend = Backend(name)
    try:
        yield name, lambda: backend.url(f"parts{uuid.uuid4().hex[:8]}")
    finally:
        backend.close()


@pytest.fixture
def store(kind: tuple[str, Callable[[], str]]) -> Iterator[Store]:
    s = open_store(kind[1]())
    yield s
    s.close()


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:07d}" for i in range(n)]


def member(follower: Follower, user: str) -> bool | None:
    """Whether ``user`` is in the segment ``big`` the follower serves (None: no segment)."""
    segment = follower.snapshot.segments.get("big")
    return None if segment is None else segment.contains(Context(user_id=user))


def wait(check: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError("not reached in time")
        time.sleep(0.02)


def follow(store: Store) -> Follower:
    follower = Follower(store)
    assert follower.wait_loaded(60)
    return follower


def test_a_segment_in_parts_is_stored_and_followed(store: Store) -> None:
    admin = Admin(store, author="tester")
    admin.set("plain", "on")  # initialized, so the follower believes what it loads
    watching = follow(store)
    try:
        users = ids("a", 120_000)
        admin.set("segment:big", {"description": "large", "users": users})
        admin.set("vip", FLAG)
        records = store.load().records
        parts = sorted(k for k in records if is_part_key(k))
        head = json.loads(records["segment:big"].raw)
        assert len(parts) == 3 == len(head[PARTS_KEY]) and "users" not in head
        assert all(len(records[k].raw.encode()) <= PART_BYTES for k in parts)
        # Listings leave the parts out; the export reads the segment whole.
        assert list(admin.segments()) == ["big"]
        assert sorted(admin.flags()) == ["plain", "vip"]
        assert read_documents(store)["segment:big"]["users"] == users
        wait(lambda: member(watching, "a-0119999") is True)
        fresh = follow(store)
        try:
            for f in (watching, fresh):
                assert f.status().invalid == {}
                assert f.status().segments == 1 and f.status().flags == 2
                vip = f.snapshot.flags["vip"]
                for user in ("a-0000000", "a-0060000", "a-0119999"):
                    assert evaluate(vip, Context(user_id=user)).enabled
                for user in ("b-0000000", "a-0120000", "a"):
                    assert not evaluate(vip, Context(user_id=user)).enabled
        finally:
            fresh.close()
    finally:
        watching.close()


def test_replacing_the_members_swaps_them_at_once(store: Store) -> None:
    admin = Admin(store, author="tester")
    old, new = ids("old", 120_000), ids("new", 120_000)
    admin.set("segment:big", {"users": old})
    follower = follow(store)
    seen: set[tuple[bool | None, ...]] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            snap = follower.snapshot.segments.get("big")
            if snap is not None:
                probes = ("old-0000000", "old-0119999", "new-0000000", "new-0119999")
                seen.add(tuple(snap.contains(Context(user_id=p)) for p in probes))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        admin.set("segment:big", {"users": new})
        wait(lambda: member(follower, "new-0000000") is True)
        time.sleep(0.2)
    finally:
        done.set()
        sampler.join(5)
        follower.close()
    assert seen <= {(True, True, False, False), (False, False, True, True)}, seen
    assert (False, False, True, True) in seen
    # The old list's parts are gone: only the new head's remain.
    records = store.load().records
    head = json.loads(records["segment:big"].raw)
    assert sorted(k.rpartition(":")[2] for k in records if is_part_key(k)) == sorted(head[PARTS_KEY])


def test_a_missing_part_keeps_the_last_good_version_and_is_reported(store: Store) -> None:
    admin = Admin(store, author="tester")
    admin.set("segment:big", {"users": ids("a", 120_000)})
    follower = follow(store)
    try:
        head = json.loads(store.get("segment:big").raw)  # type: ignore[union-attr]
        absent = "0" * 20
        store.put("segment:big", json.dumps({PARTS_KEY: [*head[PARTS_KEY], absent]}))  # another route
        missing = f"segment:big:part:{absent}"
        wait(lambda: "segment:big" in follower.status().invalid)
        assert missing in follower.status().invalid["segment:big"]
        assert member(follower, "a-0000001") is True  # the last good version is served
        admin.set("segment:big", {"users": ids("c", 120_000)})
        wait(lambda: member(follower, "c-0000001") is True)
        assert follower.status().invalid == {}
        assert member(follower, "a-0000001") is False
    finally:
        follower.close()


@pytest.mark.parametrize("kind", MILLION_ON, indirect=True)  # the 1,000,000 case: three stores
def test_a_million_members(kind: tuple[str, Callable[[], str]], store: Store) -> None:
    admin = Admin(store, author="tester")
    admin.set("plain", "on")
    follower = follow(store)
    try:
        users = ids("u", 1_000_000)
        admin.set("segment:big", {"users": users})
        admin.set("vip", FLAG)
        records = store.load().records
        assert len([k for k in records if is_part_key(k)]) == 23  # 12 MB of ids in 512 KiB parts
        wait(lambda: "vip" in follower.snapshot.flags and member(follower, "u-0999999") is True, 120)
        vip = follower.snapshot.flags["vip"]
        assert evaluate(vip, Context(user_id="u-0000000")).enabled
        assert evaluate(vip, Context(user_id="u-0543210")).enabled
        assert not evaluate(vip, Context(user_id="u-1000000")).enabled
        assert not evaluate(vip, Context(user_id="stranger")).enabled
        assert follower.status().invalid == {}
    finally:
        follower.close()
