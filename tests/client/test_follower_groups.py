"""The follower and atomic writes: a put_many's changes (``Change.more``) swap in at once."""

from __future__ import annotations

import time

from flagstaff.follower import Follower, SnapshotChange
from flagstaff.stores import Change, Record, Reset
from tests._support.client import FakeStore, eventually


def test_a_group_is_held_until_its_last_change_then_swapped_in_once() -> None:
    fake = FakeStore({"a": "off", "b": "off", "c": "off"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        heard: list[SnapshotChange] = []
        follower.on_change(heard.append)
        before = follower.snapshot
        fake.emit(Change("a", Record("a", "on", 2), 2, more=2))
        fake.emit(Change("b", Record("b", "on", 2), 3, more=1))
        time.sleep(0.2)  # the follower's task has had every chance to apply them
        assert follower.snapshot is before, "half of an atomic write was served"
        fake.emit(Change("c", None, 4, more=0))
        assert eventually(lambda: follower.snapshot.revision == 4)
        snap = follower.snapshot
        assert snap.get("a") is not None and snap.get("b") is not None and snap.get("c") is None
        assert eventually(lambda: bool(heard))
        assert len(heard) == 1 and heard[0].names >= {"a", "b", "c"}
        assert [c.name for c in heard[0].changes] == ["a", "b", "c"]
    finally:
        follower.close()


def test_a_reset_drops_a_partial_group_and_a_broken_one_is_applied_not_held() -> None:
    fake = FakeStore({"a": "off"}, revision=1)
    follower = Follower(fake)
    try:
        assert follower.wait_loaded(5)
        loads = fake.loads
        fake.emit(Change("a", Record("a", "on", 2), 2, more=1))
        fake.emit(Reset("lost track"))  # the reload holds all of the write or none of it
        assert eventually(lambda: fake.loads > loads)
        fake.records = {"a": Record("a", "on", 2), "b": Record("b", "on", 1)}
        fake.revision = 3
        follower.reload(5)
        assert follower.snapshot.get("b") is not None
        # A group whose next change never comes (a store bug) must not stall the follower:
        # a change that does not continue it applies what was held, then itself.
        fake.emit(Change("c", Record("c", "on", 1), 4, more=2))  # "more=1" never comes
        fake.emit(Change("d", Record("d", "on", 1), 5, more=0))
        fake.emit(Change("e", Record("e", "on", 1), 6, more=0))
        assert eventually(lambda: follower.snapshot.revision == 6)
        assert all(follower.snapshot.get(n) is not None for n in "cde")
    finally:
        follower.close()
