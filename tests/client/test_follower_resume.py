"""The follower and a store's ``Resumed``: live again without a reload when the
disconnection was the only reason to be stale, a reload whenever in doubt."""

from __future__ import annotations

import time

from flagstaff.errors import StoreUnavailable
from flagstaff.follower import Follower, State
from flagstaff.stores import Change, Disconnected, Record, Reset, Resumed
from tests._support.client import FakeStore, eventually


def _stale(follower: Follower, fake: FakeStore) -> None:
    fake.emit(Disconnected("cut off", time.time()))
    assert eventually(lambda: follower.state is State.STALE)
    error = follower.status().last_error
    assert error is not None and error.startswith("lost contact with the store")


def test_resumed_after_disconnected_is_live_without_a_reload() -> None:
    fake = FakeStore({"a": "on"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        _stale(follower, fake)
        # The outage's changes, replayed: applied, but not live until the store says that was all.
        fake.emit(Change("b", Record("b", "off", 1), 2))
        assert eventually(lambda: follower.snapshot.get("b") is not None)
        assert follower.state is State.STALE
        fake.emit(Resumed("back"))
        assert eventually(lambda: follower.state is State.LIVE)
        status = follower.status()
        assert (status.revision, status.last_error, status.age) == (2, None, 0.0)
        assert fake.loads == 1
    finally:
        follower.close()


def test_resumed_with_nothing_lost_changes_nothing() -> None:
    fake = FakeStore({"a": "on"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        fake.emit(Resumed("back"))
        fake.emit(Change("b", Record("b", "off", 1), 2))
        assert eventually(lambda: follower.snapshot.get("b") is not None)
        assert (follower.state, fake.loads) == (State.LIVE, 1)
    finally:
        follower.close()


def test_resumed_while_a_load_is_pending_does_not_skip_it() -> None:
    fake = FakeStore({"a": "on"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        _stale(follower, fake)
        fake.fail = StoreUnavailable("still down")
        fake.emit(Reset("lost track"))
        fake.emit(Resumed("back"))
        assert eventually(lambda: fake.loads >= 3)  # retried, the Resumed notwithstanding
        assert follower.state is State.STALE
        assert follower.status().last_error == "StoreUnavailable: still down"
        fake.records["c"] = Record("c", "on", 1)
        fake.revision = 3
        fake.fail = None
        assert eventually(lambda: follower.state is State.LIVE and follower.snapshot.get("c") is not None)
        assert follower.status().last_error is None
    finally:
        follower.close()


def test_resumed_after_an_empty_store_was_refused_reloads() -> None:
    fake = FakeStore({"a": "on"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        _stale(follower, fake)
        fake.records, fake.initialized, fake.revision = {}, False, 2
        fake.emit(Reset("wiped"))
        assert eventually(lambda: fake.loads == 2)
        assert eventually(lambda: "no flags" in (follower.status().last_error or ""))
        fake.emit(Resumed("back"))
        assert eventually(lambda: fake.loads == 3)  # in doubt: loaded again, not declared live
        assert follower.state is State.STALE and follower.snapshot.get("a") is not None
    finally:
        follower.close()
