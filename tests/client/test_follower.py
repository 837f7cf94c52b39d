"""The follower: what it hands its listeners (records, not just names), an explicit
reload, and one watch per store for a client and the HTTP event feed together.

The health, bad-document, cache and fork behaviour is tested through the client
(tests/client/test_client*.py, tests/client/test_health.py), which is a facade over a follower.
"""

from __future__ import annotations

import pytest

from flagstaff.follower import Follower, SnapshotChange, State
from flagstaff.http.app import ServerState
from flagstaff.http.tokens import TokenStore
from flagstaff.stores import Change, Record, Reset
from flagstaff.stores.memory import MemoryStore
from tests._support.client import FakeStore, eventually


def _listen(follower: Follower) -> list[SnapshotChange]:
    heard: list[SnapshotChange] = []
    follower.on_change(heard.append)
    return heard


def test_listeners_get_the_records_invalid_ones_included() -> None:
    fake = FakeStore({"a": "on"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        heard = _listen(follower)
        fake.emit(Change("b", Record("b", "off", 1), 2))
        fake.emit(Change("a", Record("a", "{not json", 2), 3))
        assert eventually(lambda: sum(len(c.changes) for c in heard) == 2)
        changes = [one for change in heard for one in change.changes]
        assert [(c.name, c.record, c.revision) for c in changes] == [
            ("b", Record("b", "off", 1), 2),
            ("a", Record("a", "{not json", 2), 3),
        ]
        assert set().union(*(c.names for c in heard)) == {"b"}  # "a" is still served as it was
        assert "a" in follower.status().invalid and follower.snapshot.get("a") is not None
    finally:
        follower.close()


def test_a_reset_reports_one_change_per_record_that_differs() -> None:
    fake = FakeStore({"a": "on", "b": "off", "c": "10"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        heard = _listen(follower)
        fake.records["a"] = Record("a", "off", 2)
        del fake.records["b"]
        fake.records["d"] = Record("d", "[", 1)  # invalid: reported, not served
        fake.revision = 5
        fake.emit(Reset("test"))
        assert eventually(lambda: any(c.reload for c in heard))
        (change,) = [c for c in heard if c.reload]
        assert [(c.name, c.record, c.revision) for c in change.changes] == [
            ("a", Record("a", "off", 2), 5),
            ("b", None, 5),
            ("d", Record("d", "[", 1), 5),
        ]
        assert change.names == {"a", "b"}
    finally:
        follower.close()


def test_reload_believes_an_empty_store_the_watch_does_not() -> None:
    fake = FakeStore({"a": "on"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        fake.records.clear()
        fake.initialized = False
        fake.emit(Reset("wiped"))
        assert eventually(lambda: follower.status().state is State.STALE)
        assert "a" in follower.snapshot  # an empty, unmarked store is not believed
        follower.reload(timeout=5)  # the caller knows it was emptied
        assert "a" not in follower.snapshot and follower.status().state is State.LIVE
    finally:
        follower.close()


def test_reload_raises_what_the_load_raised() -> None:
    fake = FakeStore({"a": "on"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        fake.fail = RuntimeError("the store broke")
        with pytest.raises(RuntimeError, match="the store broke"):
            follower.reload(timeout=5)
    finally:
        follower.close()


def test_the_server_watches_its_store_once() -> None:
    store = MemoryStore()
    store.put("a", "on")
    state = ServerState(store, tokens=TokenStore(":memory:"))
    try:
        assert eventually(lambda: state.events.following)
        assert len(store._space.watches) == 1  # the client's; the event feed relays it
        assert state.events.revision == state.client.snapshot.revision
    finally:
        state.close()
        store.close()
