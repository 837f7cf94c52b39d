"""Segments, prerequisites and values end to end: real documents written to a SQLite
store, followed by a client.

A segment written once reaches every flag that uses it in one snapshot swap; a
prerequisite flipped reaches its dependents; a deleted segment has no member; a cycle
that arrives behind the admin's back fails without recursing; values come back typed.
The documents go straight to the store (as another writer's would), not through the
admin's write-time checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flagstaff
from flagstaff import Context, Decision, Reason
from flagstaff.client import Client, Options, SnapshotChange, State
from flagstaff.errors import StoreUnavailable
from flagstaff.evaluate import evaluate
from flagstaff.snapshot import Snapshot
from flagstaff.stores import Store, open_store
from flagstaff.testing import wait_until
from tests._support.client import FakeStore

pytestmark = pytest.mark.timeout(60)

ALICE = Context(user_id="alice")
BOB = Context(user_id="bob")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flags.db'}?poll=0.02"


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = open_store(url)
    yield s
    s.close()


def put(store: Store, key: str, document: Any) -> None:
    store.put(key, json.dumps(document))


@pytest.fixture
def client(url: str, store: Store) -> Iterator[Client]:
    put(store, "segment:staff", {"users": ["bob"]})
    put(store, "new_checkout", {"targeting": [{"segments": ["staff"], "serve": "on"}]})
    put(store, "new_checkout_v2", {"prerequisites": ["new_checkout"], "enabled": "on"})
    put(store, "unrelated", {"percentage": 50})
    with flagstaff.connect(url, timeout=5) as c:
        yield c


def test_a_segment_write_changes_its_flags_in_one_swap(store: Store, client: Client) -> None:
    assert not client.is_enabled("new_checkout", ALICE)
    assert client.evaluate("new_checkout_v2", ALICE) == Decision(
        "new_checkout_v2", False, Reason.PREREQUISITE, rule="new_checkout"
    )
    changes: list[SnapshotChange] = []
    client.on_change(changes.append)
    unrelated = client.snapshot.flags["unrelated"]
    put(store, "segment:staff", {"users": ["alice"]})

    def arrived() -> Snapshot | None:
        snap = client.snapshot
        return snap if "alice" in json.dumps(snap.segments["staff"].value) else None

    snap = wait_until(arrived, message="the segment change never arrived")
    # The first snapshot with the new segment has its flag and the dependent changed too.
    assert evaluate(snap.flags["new_checkout"], ALICE) == Decision(
        "new_checkout", True, Reason.RULE, rule="targeting[0]"
    )
    assert evaluate(snap.flags["new_checkout_v2"], ALICE).enabled
    assert not evaluate(snap.flags["new_checkout"], BOB).enabled
    assert snap.flags["unrelated"] is unrelated  # not re-linked
    wait_until(lambda: changes)
    assert changes[0].names == {"segment:staff", "new_checkout", "new_checkout_v2"}
    assert client.segments["staff"].name == "staff"


def test_a_prerequisite_flip_reaches_its_dependent(store: Store, client: Client) -> None:
    put(store, "segment:staff", {"users": ["alice"]})
    wait_until(lambda: client.is_enabled("new_checkout_v2", ALICE))
    put(store, "new_checkout", "off")
    wait_until(lambda: not client.is_enabled("new_checkout_v2", ALICE))
    assert client.evaluate("new_checkout_v2", ALICE) == Decision(
        "new_checkout_v2", False, Reason.PREREQUISITE, rule="new_checkout"
    )
    # Deleted, the prerequisite is missing: the dependent fails and says so.
    store.delete("new_checkout")
    wait_until(lambda: "new_checkout" not in client.snapshot)
    decision = client.evaluate("new_checkout_v2", ALICE)
    assert decision.reason is Reason.PREREQUISITE and decision.rule == "new_checkout"
    assert decision.error == "no flag named 'new_checkout'"


def test_a_deleted_segment_means_no_member(store: Store, client: Client) -> None:
    put(store, "segment:staff", {"users": ["alice"]})
    wait_until(lambda: client.is_enabled("new_checkout", ALICE))
    store.delete("segment:staff")
    wait_until(lambda: "staff" not in client.segments)
    assert not client.is_enabled("new_checkout", ALICE)
    assert not client.is_enabled("new_checkout_v2", ALICE)


def test_an_invalid_segment_keeps_the_last_good_one(store: Store, client: Client) -> None:
    put(store, "segment:staff", {"users": ["alice"]})
    wait_until(lambda: client.is_enabled("new_checkout", ALICE))
    put(store, "segment:staff", {"usres": ["bob"]})
    wait_until(lambda: "segment:staff" in client.status().invalid)
    assert "usres" in client.status().invalid["segment:staff"]
    assert client.is_enabled("new_checkout", ALICE)


def test_a_cycle_written_behind_the_admins_back_fails_without_recursing(store: Store, client: Client) -> None:
    put(store, "a", {"prerequisites": ["b"], "enabled": "on"})
    put(store, "b", {"prerequisites": ["a"], "enabled": "on"})
    wait_until(lambda: "a" in client.snapshot and "b" in client.snapshot)
    assert client.evaluate("a", ALICE) == Decision(
        "a", False, Reason.PREREQUISITE, rule="b", error="prerequisite cycle: a -> b -> a"
    )
    assert client.evaluate("b", ALICE).error == "prerequisite cycle: b -> a -> b"
    put(store, "b", "on")
    wait_until(lambda: client.is_enabled("a", ALICE))


def test_a_holdout_segment_reaches_the_experiments(store: Store, client: Client) -> None:
    put(
        store,
        "exp",
        {"experiment": {"everyone": True, "experiment_id": 7, "variants": {"a": 20, "b": 20}}},
    )
    put(store, "segment:holdout", {"users": ["alice"], "holdout": True})
    wait_until(lambda: client.snapshot.holdouts)
    assert client.evaluate("exp", ALICE) == Decision("exp", False, Reason.HOLDOUT, rule="holdout")
    put(store, "segment:holdout", {"users": ["alice"], "holdout": False})
    wait_until(lambda: client.evaluate("exp", ALICE).reason is not Reason.HOLDOUT)


def test_values_come_back_typed(store: Store, client: Client) -> None:
    put(
        store,
        "limits",
        {
            "targeting": [{"segments": ["staff"], "serve": {"variant": "big"}}],
            "default": "on",
            "values": {"big": {"max_items": 50}, "on": {"max_items": 20}, "off": {"max_items": 10}},
        },
    )
    put(store, "label", {"enabled": "on", "values": {"on": "hello"}})
    wait_until(lambda: "label" in client.snapshot and "limits" in client.snapshot)
    assert client.get_dict("limits", BOB) == {"max_items": 50}  # bob is staff
    assert client.get_dict("limits", ALICE) == {"max_items": 20}
    assert client.value("limits", ALICE) == {"max_items": 20}
    assert client.get_str("label", ALICE) == "hello"
    details = client.value_details("label", ALICE, 3, expect=int)
    assert details.value == 3 and details.error == "expected int, got str"
    assert client.get_int("label", ALICE, 3) == 3


def test_a_client_started_from_the_cache_has_the_segments(url: str, store: Store, tmp_path: Path) -> None:
    put(store, "segment:staff", {"users": ["alice"]})
    put(store, "new_checkout", {"targeting": [{"segments": ["staff"], "serve": "on"}]})
    cache = tmp_path / "cache.json"
    with flagstaff.connect(url, timeout=5, cache=cache) as first:
        assert first.is_enabled("new_checkout", ALICE)
    # The same store, unreachable now: the client serves the cache, segments linked.
    down = FakeStore()
    down.url = url
    down.fail = StoreUnavailable("down")
    with Client(down, Options(timeout=0.1, cache=cache)) as cached:
        assert cached.status().state is State.CACHED
        assert set(cached.segments) == {"staff"}
        assert cached.is_enabled("new_checkout", ALICE) and not cached.is_enabled("new_checkout", BOB)


def test_a_deny_segment_beats_everything_but_the_kill_switch(store: Store, client: Client) -> None:
    put(store, "risky", {"enabled": "on", "deny": {"segments": ["fraud"]}})
    put(store, "segment:fraud", {"users": ["mallory"]})
    wait_until(lambda: "fraud" in client.segments and "risky" in client.snapshot)
    mallory = Context(user_id="mallory")
    assert client.is_enabled("risky", ALICE)
    decision = client.evaluate("risky", mallory)
    assert (decision.enabled, decision.reason) == (False, Reason.DENIED)
    # Taken out of the segment: the flag's next decision for mallory is on, in one change.
    put(store, "segment:fraud", {"users": []})
    wait_until(lambda: client.is_enabled("risky", mallory))


def test_a_compat_views_own_write_is_linked_and_follows_its_segment(store: Store) -> None:
    from flagstaff.compat._flags import FlagView

    put(store, "segment:staff", {"users": ["alice"]})
    view = FlagView(store)
    try:
        view.put("beta_ui", {"targeting": [{"segments": ["staff"], "serve": "on"}]})
        assert view.evaluate("beta_ui", ALICE).enabled  # read-your-writes, linked
        assert not view.evaluate("beta_ui", BOB).enabled
        put(store, "segment:staff", {"users": ["bob"]})
        wait_until(lambda: view.evaluate("beta_ui", BOB).enabled, message="the view's flag missed the change")
        assert not view.evaluate("beta_ui", ALICE).enabled
    finally:
        view.close()
