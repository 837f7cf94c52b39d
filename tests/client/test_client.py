"""The client: evaluation, following a store, faults, listeners, scopes.

These tests run twice in CI: here on threads, and under gevent monkey-patching
through tests/client/test_client_gevent.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import flagstaff
from flagstaff import Context, Decision, Reason
from flagstaff.cache import CachedFlags, SnapshotCache
from flagstaff.client import Client, Options, SnapshotChange, State, redact_url
from flagstaff.errors import ClientError, StoreUnavailable, UnsupportedStoreURL
from flagstaff.stores import SCHEMES, Change, Record, Reset, StoreState
from flagstaff.stores.memory import MemoryStore
from tests._support.client import FakeStore, FlakyStore, eventually, expected_runtime, unique_memory_url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore.from_url(unique_memory_url())
    yield s
    s.close()


@pytest.fixture
def client(store: MemoryStore) -> Iterator[Client]:
    c = flagstaff.connect(store.url, timeout=5)
    yield c
    c.close()


def test_runtime_is_the_expected_one(client: Client) -> None:
    want = expected_runtime() or "threads"
    assert client._runtime.name == want


# ---------------------------------------------------------------- evaluation


def test_unknown_flag_is_off_with_a_reason(client: Client) -> None:
    assert client.is_enabled("nope", "u1") is False
    decision = client.evaluate("nope", "u1")
    assert decision.reason is Reason.UNKNOWN_FLAG
    assert not decision.enabled
    assert client.variant("nope") is None


def test_evaluates_loaded_flags_for_every_context_shape(store: MemoryStore) -> None:
    store.put("on_flag", "on")
    store.put("beta_only", json.dumps({"beta": True}))
    store.put(
        "exp",
        json.dumps({"experiment": {"experiment_id": 7, "loggedin": True, "variants": {"a": 20, "b": 20}}}),
    )
    with flagstaff.connect(store.url) as c:
        assert c.status().state is State.LIVE
        assert c.is_enabled("on_flag") is True
        assert c.is_enabled("beta_only", {"user_id": "1", "groups": ["beta"]}) is True
        assert c.is_enabled("beta_only", Context(user_id="1")) is False
        assert c.is_enabled("beta_only", 17) is False
        variants = {c.variant("exp", f"user{i}") for i in range(400)}
        assert {"a", "b", "control_1", "control_2"} <= variants
        assert {c.evaluate("exp", f"user{i}").experiment_id for i in range(400)} >= {7}
        decisions = c.all({"user_id": "1", "groups": ["beta"]})
        assert set(decisions) == {"on_flag", "beta_only", "exp"}
        assert decisions["beta_only"].reason is Reason.TARGET


def test_a_bad_context_is_an_error_decision_never_an_exception(store: MemoryStore) -> None:
    store.put("pct", "50")
    with flagstaff.connect(store.url) as c:
        bad = object()
        assert c.is_enabled("pct", bad) is False  # type: ignore[arg-type]
        decision = c.evaluate("pct", bad)  # type: ignore[arg-type]
        assert decision.reason is Reason.ERROR
        assert decision.error is not None and "context" in decision.error
        assert c.all(bad)["pct"].reason is Reason.ERROR  # type: ignore[arg-type]
        with c.scope(bad) as scope:  # type: ignore[arg-type]
            assert scope.evaluate("pct").reason is Reason.ERROR
            assert c.is_enabled("pct") is False


def test_schedule_reads_the_clock_only_without_a_context_time(store: MemoryStore) -> None:
    now = time.time()
    store.put("later", json.dumps({"enabled": "on", "schedule": {"start": now + 3600}}))
    with flagstaff.connect(store.url) as c:
        assert c.is_enabled("later", "u") is False
        assert c.evaluate("later", "u").reason is Reason.SCHEDULE
        assert c.is_enabled("later", {"user_id": "u", "time": now + 7200}) is True


def test_unsupported_url_raises_at_connect() -> None:
    with pytest.raises(UnsupportedStoreURL):
        flagstaff.connect("gopher://nowhere")


# ---------------------------------------------------------------- following changes


class CountingStore(MemoryStore):
    loads = 0

    def load(self) -> StoreState:
        self.loads += 1
        return super().load()


def test_changes_are_applied_without_reload() -> None:
    store = CountingStore(unique_memory_url().removeprefix("memory://"))
    with Client(store) as client:
        store.put("f", "off")
        assert eventually(lambda: "f" in client.snapshot)
        store.put("f", "on")
        assert eventually(lambda: client.is_enabled("f"))
        assert client.snapshot.revision == 2
        store.delete("f")
        assert eventually(lambda: client.evaluate("f").reason is Reason.UNKNOWN_FLAG)
        assert client.status().revision == 3
        assert store.loads == 1
    store.close()


def test_changes_not_newer_than_held_are_ignored_and_reset_reloads() -> None:
    fake = FakeStore({"f": "on"}, revision=5)
    with Client(fake, Options(timeout=5)) as c:
        assert c.is_enabled("f")
        fake.emit(Change("f", Record("f", "off", 2), 5))  # not newer: ignored
        fake.emit(Change("g", Record("g", "on", 6), 6))  # newer: applied
        assert eventually(lambda: c.is_enabled("g"))
        assert c.is_enabled("f") is True
        fake.records = {"h": Record("h", "on", 1)}
        fake.revision = 3  # a reset store may restart its revisions
        loads = fake.loads
        updates: list[SnapshotChange] = []
        c.on_change(updates.append)
        fake.emit(Reset("test"))
        assert eventually(lambda: c.is_enabled("h") and fake.loads > loads)
        assert eventually(lambda: any(u.reload and {"f", "g", "h"} <= u.names for u in updates))
        assert not c.is_enabled("f")
        assert c.snapshot.revision == 3
        fake.emit(Change("i", Record("i", "on", 1), 4))
        assert eventually(lambda: c.is_enabled("i"))


def test_invalid_document_is_skipped_and_last_good_kept(
    store: MemoryStore, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    store.put("f", json.dumps({"users": ["alice"]}))
    assert eventually(lambda: client.is_enabled("f", {"user_name": "alice"}))
    with caplog.at_level(logging.WARNING, logger="flagstaff.client"):
        store.put("f", json.dumps({"users": ["alice"], "percentag": 5}))  # out-of-band bad write
        store.put("g", "{not json")
        assert eventually(lambda: client.status().revision == 3)
    assert client.is_enabled("f", {"user_name": "alice"}) is True
    assert client.evaluate("g").reason is Reason.UNKNOWN_FLAG
    status = client.status()
    assert set(status.invalid) == {"f", "g"}
    assert "percentag" in status.invalid["f"]
    assert any("skipping an invalid document for flag 'f'" in r.getMessage() for r in caplog.records)
    store.put("f", json.dumps({"users": ["bob"]}))  # a good version clears the problem
    assert eventually(lambda: client.is_enabled("f", {"user_name": "bob"}))
    assert set(client.status().invalid) == {"g"}


def test_invalid_document_in_a_full_load_keeps_last_good() -> None:
    fake = FakeStore({"f": "on", "g": "on"})
    with Client(fake, Options(timeout=5)) as c:
        fake.records = {"f": Record("f", "[1, 2", 2), "g": Record("g", "off", 2)}
        fake.revision = 2
        fake.emit(Reset("test"))
        assert eventually(lambda: not c.is_enabled("g"))
        assert c.is_enabled("f") is True
        assert "f" in c.status().invalid


def test_empty_uninitialized_store_is_not_adopted() -> None:
    fake = FakeStore({"f": "on"}, revision=9)
    with Client(fake, Options(timeout=5)) as c:
        fake.records, fake.revision, fake.initialized = {}, 0, False  # a wiped store
        fake.emit(Reset("server restarted"))
        assert eventually(lambda: c.status().last_error is not None)
        status = c.status()
        assert c.is_enabled("f") is True
        assert status.state is State.STALE
        assert "never written through flagstaff" in (status.last_error or "")
        # A write through flagstaff marks the store initialized: believed again, in full.
        fake.records, fake.revision, fake.initialized = {"g": Record("g", "on", 1)}, 1, True
        fake.emit(Change("g", Record("g", "on", 1), 1))
        assert eventually(lambda: c.is_enabled("g"))
        assert not c.is_enabled("f")
        assert c.status().state is State.LIVE


def test_empty_initialized_store_is_adopted(store: MemoryStore, client: Client) -> None:
    store.put("f", "on")
    assert eventually(lambda: client.is_enabled("f"))
    store.delete("f")  # emptiness written on purpose
    assert eventually(lambda: len(client.snapshot) == 0)
    assert client.status().state is State.LIVE


def test_constructor_wait_is_bounded_and_state_is_defaults() -> None:
    fake = FakeStore({"f": "on"})
    fake.block_seconds = 1.0
    start = time.monotonic()
    c = Client(fake, Options(timeout=0.2))
    try:
        assert time.monotonic() - start < 0.9
        assert c.status().state is State.DEFAULTS
        assert c.status().age is None
        assert c.is_enabled("f") is False
        assert eventually(lambda: c.is_enabled("f"), timeout=5)
        assert c.status().state is State.LIVE
    finally:
        c.close()


def test_store_failure_makes_live_data_stale_then_live_again() -> None:
    fake = FakeStore({"f": "on"})
    with Client(fake, Options(timeout=5)) as c:
        fake.fail = StoreUnavailable("connection refused")
        fake.emit(Reset("lost connection"))
        assert eventually(lambda: c.status().state is State.STALE)
        status = c.status()
        assert status.age is not None and status.age >= 0
        assert "connection refused" in (status.last_error or "")
        assert c.is_enabled("f") is True  # still serving the last good flags
        fake.fail = None
        assert eventually(lambda: c.status().state is State.LIVE, timeout=10)
        assert c.status().last_error is None


# ---------------------------------------------------------------- disk cache


def test_unreachable_store_at_start_serves_the_disk_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "flags.json"
    fake = FakeStore({"f": "on", "p": json.dumps({"users": ["ann"]})}, revision=4)
    with Client(fake, Options(timeout=5, cache=cache, cache_interval=0.01)):
        pass  # close() writes the last snapshot
    assert cache.exists()
    down = FakeStore()
    down.fail = StoreUnavailable("no route to host")
    c = Client(down, Options(timeout=0.1, cache=cache))
    try:
        status = c.status()
        assert status.state is State.CACHED
        assert status.revision == 4
        assert status.age is not None
        assert c.is_enabled("f") is True
        assert c.is_enabled("p", {"user_name": "ann"}) is True
        down.records = {"f": Record("f", "off", 2)}
        down.revision = 5
        down.fail = None
        assert eventually(lambda: c.status().state is State.LIVE, timeout=10)
        assert c.is_enabled("f") is False
    finally:
        c.close()


def test_a_store_that_cannot_be_opened_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMES, "flaky", "tests._support.client:FlakyStore")
    monkeypatch.setattr(FlakyStore, "down", True)
    monkeypatch.setattr(FlakyStore, "opened", [])
    cache = tmp_path / "flags.json"
    SnapshotCache(cache).save(CachedFlags(1, {"f": "off", "g": "on"}, store_url="flaky://x"))
    with flagstaff.connect("flaky://x", timeout=0.1, cache=cache) as c:
        assert c.status().state is State.CACHED
        assert c.is_enabled("g") and not c.is_enabled("f")
        assert "down" in (c.status().last_error or "")
        FlakyStore.down = False
        assert eventually(lambda: c.status().state is State.LIVE, timeout=10)
        assert c.is_enabled("f") and not c.is_enabled("g")
        assert len(FlakyStore.opened) == 1
    assert FlakyStore.opened[0].closed  # opened by the client, so closed by it


def test_cache_is_written_after_changes(tmp_path: Path, store: MemoryStore) -> None:
    cache = tmp_path / "flags.json"
    with flagstaff.connect(store.url, cache=cache) as c:
        store.put("f", "on")
        assert eventually(lambda: c.is_enabled("f"))
        assert eventually(lambda: cache.exists() and "f" in json.loads(cache.read_text())["documents"])
        assert json.loads(cache.read_text())["store_url"] == store.url


def test_a_cache_of_another_store_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "flags.json"
    with Client(FakeStore({"f": "on"}), Options(cache=cache)):
        pass
    other = MemoryStore.from_url(unique_memory_url())
    try:
        with Client(other, Options(timeout=1, cache=cache)) as c:
            assert c.is_enabled("f") is False
    finally:
        other.close()


# ---------------------------------------------------------------- listeners and waiting


def test_listeners_run_off_the_watch_task(store: MemoryStore, client: Client) -> None:
    seen: list[SnapshotChange] = []
    released = client._runtime.event()

    def slow(update: SnapshotChange) -> None:
        released.wait(5)

    def failing(update: SnapshotChange) -> None:
        raise RuntimeError("boom")

    client.on_change(slow)
    client.on_change(failing)
    unsubscribe = client.on_change(seen.append)
    store.put("a", "on")
    store.put("b", "on")
    # The slow listener is blocked, yet changes keep being applied.
    assert eventually(lambda: client.is_enabled("a") and client.is_enabled("b"))
    released.set()
    assert eventually(lambda: {n for u in seen for n in u.names} == {"a", "b"})
    unsubscribe()
    count = len(seen)
    store.put("c", "on")
    assert eventually(lambda: client.is_enabled("c"))
    time.sleep(0.1)
    assert len(seen) == count


def test_wait_for_change_returns_the_new_decision(store: MemoryStore, client: Client) -> None:
    store.put("f", "off")
    assert eventually(lambda: "f" in client.snapshot)
    assert client.wait_for_change("f", 0.05) is None

    def flip() -> None:
        time.sleep(0.05)
        store.put("f", json.dumps({"users": ["u1"]}))  # same value for others: no wake-up for them
        store.put("g", "on")

    task = client._runtime.spawn(flip)
    decision = client.wait_for_change("f", 5, {"user_name": "u1"})
    task.join(5)
    assert isinstance(decision, Decision)
    assert decision.enabled and decision.reason is Reason.TARGET
    assert client.wait_for_change("f", 0.1, {"user_name": "u2"}) is None


def test_wait_for_change_after_close_raises(store: MemoryStore) -> None:
    c = flagstaff.connect(store.url)
    c.close()
    c.close()  # idempotent
    with pytest.raises(ClientError):
        c.wait_for_change("f", 0.1)


# ---------------------------------------------------------------- scopes and exposures


def test_scope_pins_one_snapshot_for_the_whole_request(store: MemoryStore, client: Client) -> None:
    store.put("a", "on")
    store.put("b", "on")
    assert eventually(lambda: client.is_enabled("b"))
    with client.scope("u1") as scope:
        assert client.is_enabled("a") is True
        store.put("a", "off")
        store.put("b", "off")
        assert eventually(lambda: not client.is_enabled("a", "u1"))  # outside view moved on
        # ...but the request still sees the snapshot it started with, whole.
        assert client.is_enabled("a") is True
        assert client.evaluate("b").enabled is True
        assert scope.all()["b"].enabled is True
    assert client.is_enabled("a") is False  # out of the scope: current flags, anonymous


def test_scope_pins_one_clock_reading(store: MemoryStore, client: Client) -> None:
    switch_at = time.time() + 0.3
    store.put("midnight", json.dumps({"enabled": "on", "schedule": {"start": switch_at}}))
    assert eventually(lambda: "midnight" in client.snapshot)
    with client.scope("u") as scope:
        assert not client.is_enabled("midnight")
        time.sleep(max(0.0, switch_at - time.time()) + 0.05)
        assert not client.is_enabled("midnight")  # a request that began before stays before
        assert scope.now < switch_at
    with client.scope("u"):
        assert client.is_enabled("midnight")  # a new request sees the switch


def test_scopes_are_per_client_and_nest(store: MemoryStore, client: Client) -> None:
    store.put("f", json.dumps({"users": ["u1"]}))
    assert eventually(lambda: "f" in client.snapshot)
    other = Client(FakeStore({"f": "on"}))
    try:
        with client.scope({"user_name": "u1"}):
            assert other.is_enabled("f") is True  # another client's flags, unaffected
            with client.scope({"user_name": "u2"}):
                assert client.is_enabled("f") is False
            assert client.is_enabled("f") is True
        scope = client.scope()
        with scope, pytest.raises(ClientError):
            scope.__enter__()
    finally:
        other.close()


def _exposed_user(c: Client, name: str) -> str:
    for i in range(1000):
        if c.evaluate(name, f"u{i}").experiment_id is not None:
            return f"u{i}"
    raise AssertionError("no user is in the experiment")


def test_exposure_hook_once_per_scope_per_flag(store: MemoryStore) -> None:
    store.put(
        "exp", json.dumps({"experiment": {"experiment_id": 11, "loggedin": True, "variants": {"t": 30}}})
    )
    store.put("plain", "50")
    exposures: list[tuple[str, str | None, int | None]] = []

    def hook(decision: Decision, context: Context) -> None:
        exposures.append((decision.flag, context.user_id, decision.experiment_id))

    with flagstaff.connect(store.url, on_exposure=hook) as c:
        for i in range(40):
            c.is_enabled("plain", f"u{i}")
        assert exposures == []
        user = _exposed_user(c, "exp")
        exposures.clear()
        with c.scope(user):
            for _ in range(3):
                c.variant("exp")
                c.is_enabled("exp")
        assert exposures == [("exp", user, 11)]
        c.evaluate("exp", user)
        c.is_enabled("exp", user)
        assert exposures[1:] == [("exp", user, 11)] * 2  # outside a scope: every call
        c.all(user)
        assert exposures[3:] == [("exp", user, 11)]


def test_a_failing_exposure_hook_never_reaches_the_caller(store: MemoryStore) -> None:
    store.put(
        "exp", json.dumps({"experiment": {"experiment_id": 3, "loggedin": True, "variants": {"t": 30}}})
    )
    calls: list[str] = []

    def hook(decision: Decision, context: Context) -> None:
        calls.append(decision.flag)
        raise ValueError("analytics down")

    with flagstaff.connect(store.url, on_exposure=hook) as c:
        user = _exposed_user(c, "exp")
        assert c.variant("exp", user) in {"t", "control_1", "control_2"}
        c.is_enabled("exp", user)
        assert len(calls) >= 3


# ---------------------------------------------------------------- lifecycle


def test_close_stops_following_and_releases_an_opened_store(store: MemoryStore) -> None:
    c = flagstaff.connect(store.url)
    opened = c.follower.store
    assert opened is not None
    c.close()
    store.put("f", "on")
    time.sleep(0.1)
    assert "f" not in c.snapshot
    assert opened._closed  # type: ignore[attr-defined]
    fake = FakeStore()
    with Client(fake):
        pass
    assert not fake.closed  # a store passed in belongs to the caller
    assert fake.watches and all(w.stopped for w in fake.watches)


def test_a_flag_that_fails_to_evaluate_is_an_error_decision(store: MemoryStore, client: Client) -> None:
    store.put("f", "50")
    assert eventually(lambda: "f" in client.snapshot)
    flag = client.snapshot.flags["f"]

    def boom(context: Context) -> Decision:
        raise ZeroDivisionError("compiled check failed")

    # Swap in a broken compiled flag, as a bug in a check would produce.
    snap = client.snapshot
    broken = dataclasses.replace(flag, run=boom)
    client.follower._snapshot = snap.with_flag(broken, snap.revision, snap.loaded_at)
    assert client.is_enabled("f", "u1") is False
    decision = client.evaluate("f", "u1")
    assert decision.reason is Reason.ERROR and "compiled check failed" in (decision.error or "")
    assert client.all("u1")["f"].reason is Reason.ERROR


def test_close_ends_the_client_tasks(store: MemoryStore) -> None:
    c = flagstaff.connect(store.url)
    tasks = [c.follower._task, c.follower._dispatcher]
    c.close()
    if c._runtime.name == "threads":
        assert not any(t.is_alive() for t in tasks)  # type: ignore[union-attr]
    else:
        assert all(t.dead for t in tasks)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("etcd://root:pw@localhost:2379/flags", "etcd://root:***@localhost:2379/flags"),
        ("sqlite:///var/flags.db", "sqlite:///var/flags.db"),
        ("memory://x", "memory://x"),
        (
            "https://flags.example/api?namespace=web&token=abc123",
            "https://flags.example/api?namespace=web&token=***",
        ),
    ],
)
def test_store_urls_are_shown_without_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    fake = FakeStore()
    fake.url = url
    with Client(fake) as c:
        assert c.status().store_url == shown
        assert "s3cret" not in repr(c) and ":pw@" not in repr(c)


def test_scopes_are_local_to_each_asyncio_task(store: MemoryStore, client: Client) -> None:
    store.put("f", json.dumps({"users": ["ann"]}))
    assert eventually(lambda: "f" in client.snapshot)

    async def request(user: str, results: dict[str, bool]) -> None:
        with client.scope({"user_name": user}):
            await asyncio.sleep(0.01)  # the other request runs meanwhile, in its own scope
            results[user] = client.is_enabled("f")

    async def main() -> dict[str, bool]:
        results: dict[str, bool] = {}
        await asyncio.gather(request("ann", results), request("bob", results))
        return results

    assert asyncio.run(main()) == {"ann": True, "bob": False}
