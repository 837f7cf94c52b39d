"""The conformance suite: what every :class:`~flagstaff.stores.base.Store` must do.

Every store (memory, file, SQLite, ZooKeeper, etcd, Redis) and every wrapper
(:class:`~flagstaff.stores.wrappers.ReadOnlyStore`) runs these same tests. To
run them for a store, subclass :class:`StoreConformance` in a test module, with
a name starting with ``Test`` so pytest collects it, and provide three methods::

    import pytest
    from flagstaff.stores.base import Store
    from flagstaff.testing.conformance import StoreConformance

    class TestRedisStore(StoreConformance):
        keeps_history = False            # class attributes: see below

        @pytest.fixture(autouse=True)
        def _server(self, redis_server):  # any fixture the store needs,
            self.server = redis_server    # kept on self for make_store

        def make_store(self, namespace: str) -> Store:
            # A new store object on the same backend, in ``namespace``. Called
            # several times per test, with the same namespace (two clients of
            # one namespace) or different ones (isolation). Namespaces are
            # fresh per test, lowercase letters, digits and '-'.
            return RedisStore.from_url(f"redis://{self.server.address}/0?prefix={namespace}")

        def force_reset(self, store: Store) -> None:
            # Make every open watch on ``store`` deliver a Reset, the way the
            # backend really loses track (drop the connection, expire the
            # session, compact the log...). Writes may follow immediately.
            self.server.kill_client_connections()

        def write_raw(self, store: Store, name: str, data: bytes) -> None:
            # Store ``data`` as flag ``name`` the way another program would
            # (redis-cli, zkCli.sh, sqlite3, an editor), past every check of
            # flagstaff's: the bytes may be no UTF-8, no JSON, no flag.
            ...

The suite writes through ``writer(store)``, which is ``store`` itself unless the
test class says otherwise: a read-only wrapper's test returns the store it wraps,
so the suite's writes reach the backend and its reads and watches go through the
wrapper::

        def writer(self, store: Store) -> Store:
            assert isinstance(store, ReadOnlyStore)
            return store.wrapped

A store with a backend to lose (every store but memory) also sets
:attr:`StoreConformance.contact_bound` and provides ``cut_off``::

        contact_bound = 6.0              # seconds: documented in docs/stores.md

        def cut_off(self, store: Store) -> Callable[[], None]:
            # Cut ``store`` off from its backend the way a network partition or a
            # stopped server does (open connections dropped, new ones refused);
            # return a function that restores contact.
            self.proxy.partition()
            return self.proxy.heal

A store that resumes a watch losslessly after an outage (:class:`~flagstaff.stores.base.Resumed`
rather than ``Reset``) sets ``resumes = True`` and provides ``make_uncut_store``, a
store on the same backend that ``cut_off`` leaves alone (the suite writes through it
during the outage); one that can also make the outage's changes unrecoverable
provides ``lose_history``::

        resumes = True

        def writer(self, store: Store) -> Store:
            assert isinstance(store, ReadOnlyStore)
            return store.wrapped

A store with a backend to lose (every store but memory) also sets
:attr:`StoreConformance.contact_bound` and provides ``cut_off``::

        contact_bound = 6.0              # seconds: documented in docs/stores.md

        def cut_off(self, store: Store) -> Callable[[], None]:
            # Cut ``store`` off from its backend the way a network partition or a
            # stopped server does (open connections dropped, new ones refused);
            # return a function that restores contact.
            self.proxy.partition()
            return self.proxy.heal

A store that resumes a watch losslessly after an outage (:class:`~flagstaff.stores.base.Resumed`
rather than ``Reset``) subclasses :class:`ResumingStoreConformance` instead and provides
``make_uncut_store``, a store on the same backend that ``cut_off`` leaves alone (the
suite writes through it during the outage); one whose resume replays a log that an
outage can outlast subclasses :class:`ReplayingStoreConformance` and also provides
``lose_history``. A store's test class only has the checks that apply to it (CI runs
every collected check, and skips none)::

        class TestRedisStore(ReplayingStoreConformance):
            ...

        def make_uncut_store(self, namespace: str) -> Store:
            return RedisStore.from_url(self.server.url(namespace))   # no proxy

        def lose_history(self, store: Store) -> None:
            # Make the changes written since the watch was cut off unrecoverable
            # (compact the log, trim the history), so the reconnect must Reset.
            self.server.admin().delete(store._history)

Stores are closed after each test by the suite. Every wait is bounded by
:attr:`StoreConformance.timeout`; checks that nothing (more) arrives wait
:attr:`StoreConformance.settle`.

Class attributes a store may change:

``keeps_history``
    ``True`` if ``history()`` records who/when/before/after of every change.
``replays_changes``
    ``True`` if ``watch(since=r)`` replays the changes after an old revision
    ``r``; ``False`` if the store may deliver a ``Reset`` instead (allowed by
    the protocol: "a store that may have missed changes delivers Reset").
``bytes_per_document``
    ``True`` if one flag's value can hold bytes that are not UTF-8 while the
    others stay readable; ``False`` for formats that refuse such a file whole
    (YAML). The undecodable-bytes checks then cover only what can be written.
``resumes``
    ``True`` if a watch that lost contact delivers ``Resumed`` (after the
    changes of the outage) when it can prove it missed nothing; ``False`` if it
    always delivers ``Reset`` once back.
``keeps_raw_text``
    ``True`` if the store returns ``raw`` byte for byte, whatever it is;
    ``False`` for stores holding parsed documents (the file store): raw
    that is not a document is refused with ``ValidationError`` and raw comes
    back as canonical JSON (:func:`flagstaff.model.encode_document`). The suite
    writes canonical JSON everywhere else, so both kinds pass the same checks.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

import pytest

from flagstaff.client import Client, Options, State
from flagstaff.errors import ConflictError, NotFoundError, StoreError, ValidationError
from flagstaff.model import encode_document, parse_text
from flagstaff.stores.base import (
    Change,
    Disconnected,
    HistoryEntry,
    Record,
    Reset,
    Resumed,
    Store,
    StoreState,
    Watch,
    WatchEvent,
    Write,
)
from flagstaff.testing import EventRecorder, wait_until

__all__ = ["ReplayingStoreConformance", "ResumingStoreConformance", "StoreConformance", "document"]


def document(n: int, **extra: object) -> str:
    """A small canonical flag document, distinct for each ``n``."""
    return encode_document({"enabled": True, "percentage": n % 101, "description": f"doc {n}", **extra})


StoreFactory = Callable[[str], Store]


class StoreConformance:
    """Base class of every store's conformance tests. See the module doc."""

    keeps_history: ClassVar[bool] = True
    replays_changes: ClassVar[bool] = True
    keeps_raw_text: ClassVar[bool] = True
    bytes_per_document: ClassVar[bool] = True
    #: Upper bound on any wait for an event (seconds).
    timeout: ClassVar[float] = 5.0
    #: How long to watch for events that must *not* arrive (seconds).
    settle: ClassVar[float] = 0.3
    #: The store's stated bound (seconds) from losing its backend to a watch's
    #: ``Disconnected``; ``None`` for a store with no backend to lose (memory).
    contact_bound: ClassVar[float | None] = None
    #: Whether a watch back from an outage that missed nothing delivers ``Resumed``.
    resumes: ClassVar[bool] = False

    # ------------------------------------------------------------ to provide

    def make_store(self, namespace: str) -> Store:
        """A new store object on the backend under test, in ``namespace``."""
        raise NotImplementedError(f"{type(self).__name__} must define make_store(namespace)")

    def force_reset(self, store: Store) -> None:
        """Make every open watch on ``store`` deliver :class:`Reset`."""
        raise NotImplementedError(f"{type(self).__name__} must define force_reset(store)")

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        """Store ``data`` as flag ``name`` behind flagstaff's back (another program's write)."""
        raise NotImplementedError(f"{type(self).__name__} must define write_raw(store, name, data)")

    def cut_off(self, store: Store) -> Callable[[], None]:
        """Cut ``store`` off from its backend; return a function restoring contact."""
        raise NotImplementedError(f"{type(self).__name__} sets contact_bound but defines no cut_off(store)")

    def make_uncut_store(self, namespace: str) -> Store:
        """A store on the same backend, in ``namespace``, that ``cut_off`` does not cut off."""
        raise NotImplementedError(f"{type(self).__name__} sets resumes but defines no make_uncut_store")

    def lose_history(self, store: Store) -> None:
        """Make the changes written since the watch was cut off unrecoverable (``store`` is
        an uncut store), so that the reconnect must deliver ``Reset``."""
        pytest.skip(f"{type(self).__name__} cannot make a watch's missed changes unrecoverable")

    def writer(self, store: Store) -> Store:
        """The store the suite writes through to change what ``store`` holds: ``store`` itself,
        except for a wrapper that refuses writes (:class:`~flagstaff.stores.wrappers.ReadOnlyStore`),
        whose test returns the store it wraps."""
        return store

    # -------------------------------------------------------------- fixtures

    @pytest.fixture
    def open_store(self) -> Iterator[StoreFactory]:
        """``open_store(namespace)``: a store closed after the test."""
        opened: list[Store] = []

        def open_(namespace: str) -> Store:
            store = self.make_store(namespace)
            opened.append(store)
            return store

        yield open_
        for store in reversed(opened):
            store.close()

    @pytest.fixture
    def namespace(self) -> str:
        return f"conf-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def store(self, open_store: StoreFactory, namespace: str) -> Store:
        return open_store(namespace)

    # --------------------------------------------------------------- helpers

    def _settle(self) -> None:
        time.sleep(self.settle)

    @staticmethod
    def _same_state(a: StoreState, b: StoreState) -> bool:
        return a.revision == b.revision and dict(a.records) == dict(b.records)

    # ---------------------------------------------------------------- basics

    def test_round_trip(self, store: Store) -> None:
        raw = document(1)
        record = self.writer(store).put("alpha", raw)
        assert record == Record("alpha", raw, 1)
        assert store.get("alpha") == record
        state = store.load()
        assert dict(state.records) == {"alpha": record}
        assert state.revision > 0

    def test_unicode_and_large_documents(self, store: Store) -> None:
        small = document(2, description='ünïcødé ✓ 旗 \u2028 "quoted" \\ back')
        large = document(3, blob="x" * 60_000)
        self.writer(store).put("unicode", small)
        self.writer(store).put("large", large)
        assert store.get("unicode") == Record("unicode", small, 1)
        assert store.get("large") == Record("large", large, 1)
        assert {r.raw for r in store.load().records.values()} == {small, large}

    def test_missing_keys(self, store: Store) -> None:
        assert store.get("nope") is None
        with pytest.raises(NotFoundError):
            self.writer(store).delete("nope")
        with pytest.raises(NotFoundError):
            self.writer(store).delete("nope", expect=1)
        assert "nope" not in store.load().records

    def test_overwrite_bumps_version(self, store: Store) -> None:
        assert self.writer(store).put("alpha", document(1)).version == 1
        assert self.writer(store).put("alpha", document(2)).version == 2
        # Writing identical text is still a write.
        assert self.writer(store).put("alpha", document(2)).version == 3
        assert store.get("alpha") == Record("alpha", document(2), 3)

    def test_delete(self, store: Store) -> None:
        self.writer(store).put("alpha", document(1))
        self.writer(store).put("beta", document(2))
        self.writer(store).delete("alpha")
        assert store.get("alpha") is None
        assert set(store.load().records) == {"beta"}
        with pytest.raises(NotFoundError):
            self.writer(store).delete("alpha")
        # Once deleted, the flag does not exist for compare-and-set either.
        again = self.writer(store).put("alpha", document(3), expect=0)
        assert again.version >= 1
        assert store.get("alpha") == again

    def test_raw_text(self, store: Store) -> None:
        if self.keeps_raw_text:
            for name, raw in [
                ("garbage", "{not json at all"),
                ("bare", "on"),
                ("spaced", '{ "b": 1, "a": 2 }'),
            ]:
                assert self.writer(store).put(name, raw).raw == raw
                record = store.get(name)
                assert record is not None
                assert record.raw == raw
        else:
            before = store.load()
            with pytest.raises(ValidationError):
                self.writer(store).put("garbage", "{not json at all")
            assert self._same_state(store.load(), before)
            assert store.get("garbage") is None
            record = self.writer(store).put("spaced", '{ "b": 1, "a": 2 }')
            assert record.raw == '{"a":2,"b":1}'
            assert store.get("spaced") == record

    # ------------------------------------------------------ compare-and-set

    def test_compare_and_set(self, store: Store) -> None:
        created = self.writer(store).put("alpha", document(1), expect=0)
        assert created.version == 1
        before = store.load()

        with pytest.raises(ConflictError):
            self.writer(store).put("alpha", document(2), expect=0)  # exists already
        with pytest.raises(ConflictError):
            self.writer(store).put("alpha", document(2), expect=created.version + 1)  # not there yet
        with pytest.raises(ConflictError):
            self.writer(store).put("absent", document(2), expect=1)  # does not exist
        with pytest.raises(ConflictError):
            self.writer(store).delete("alpha", expect=created.version + 7)
        after = store.load()
        assert self._same_state(after, before), "a failed compare-and-set changed the store"
        assert store.get("absent") is None

        updated = self.writer(store).put("alpha", document(3), expect=created.version)
        assert updated.version == created.version + 1
        with pytest.raises(ConflictError):
            self.writer(store).put("alpha", document(4), expect=created.version)  # stale now
        with pytest.raises(ConflictError):
            self.writer(store).delete("alpha", expect=created.version)  # stale
        assert store.get("alpha") == updated
        self.writer(store).delete("alpha", expect=updated.version)
        assert store.get("alpha") is None

    def test_conflict_error_names_the_flag(self, store: Store) -> None:
        self.writer(store).put("alpha", document(1))
        with pytest.raises(ConflictError) as info:
            self.writer(store).put("alpha", document(2), expect=0)
        assert info.value.name == "alpha"
        assert isinstance(info.value, StoreError)

    def test_concurrent_compare_and_set_loses_no_update(self, store: Store) -> None:
        self.writer(store).put("counter", encode_document({"count": 0}), expect=0)
        threads, per_thread = 4, 6
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(per_thread):
                    for _attempt in range(500):
                        record = store.get("counter")
                        assert record is not None
                        count = int(json.loads(record.raw)["count"])
                        try:
                            self.writer(store).put(
                                "counter", encode_document({"count": count + 1}), expect=record.version
                            )
                            break
                        except ConflictError:
                            continue
                    else:
                        raise AssertionError("500 compare-and-set attempts all conflicted")
            except BaseException as exc:  # reported by the main thread below
                errors.append(exc)

        workers = [threading.Thread(target=work, name=f"cas-{i}") for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(self.timeout * 6)
        assert not any(w.is_alive() for w in workers), "compare-and-set workers did not finish"
        assert errors == []
        record = store.get("counter")
        assert record is not None
        assert record.raw == encode_document({"count": threads * per_thread})
        assert record.version == threads * per_thread + 1

    # ------------------------------------------------------------ revisions

    def test_versions_and_revisions_increase(self, store: Store) -> None:
        revisions = [store.load().revision]
        versions = []
        for i, name in enumerate(["alpha", "beta", "alpha", "gamma", "alpha"]):
            versions.append((name, self.writer(store).put(name, document(i)).version))
            revisions.append(store.load().revision)
        self.writer(store).delete("beta")
        revisions.append(store.load().revision)
        assert versions == [("alpha", 1), ("beta", 1), ("alpha", 2), ("gamma", 1), ("alpha", 3)]
        assert revisions == sorted(set(revisions)), f"not strictly increasing: {revisions}"

    def test_load_revision_is_last_change(self, store: Store) -> None:
        self.writer(store).put("alpha", document(1))
        recorder = EventRecorder()
        store.watch(recorder, since=store.load().revision)
        self.writer(store).put("beta", document(2))
        self.writer(store).delete("alpha")
        changes = recorder.wait_for_changes(2, self.timeout)
        assert store.load().revision == changes[-1].revision

    # --------------------------------------------------------------- watches

    def test_watch_sees_put_and_delete_in_order(self, store: Store) -> None:
        start = store.load().revision
        recorder = EventRecorder()
        store.watch(recorder, since=start)
        a1 = self.writer(store).put("alpha", document(1))
        b1 = self.writer(store).put("beta", document(2))
        a2 = self.writer(store).put("alpha", document(3))
        self.writer(store).delete("alpha")
        changes = recorder.wait_for_changes(4, self.timeout)
        self._settle()
        assert recorder.resets() == []
        changes = recorder.changes()
        assert [(c.name, c.record) for c in changes] == [
            ("alpha", a1),
            ("beta", b1),
            ("alpha", a2),
            ("alpha", None),
        ]
        revisions = [c.revision for c in changes]
        assert revisions[0] > start
        assert revisions == sorted(set(revisions)), f"not strictly increasing: {revisions}"
        assert revisions[-1] == store.load().revision

    def test_watch_since_delivers_only_later_changes(self, store: Store) -> None:
        self.writer(store).put("alpha", document(1))
        r1 = store.load().revision
        b = self.writer(store).put("beta", document(2))
        c = self.writer(store).put("gamma", document(3))
        r3 = store.load().revision

        recorder = EventRecorder()
        store.watch(recorder, since=r1)
        events = recorder.wait_for_events(1, self.timeout)
        if isinstance(events[0], Reset):
            assert not self.replays_changes, "a store that replays changes sent Reset for a recent revision"
        else:
            recorder.wait_for_changes(2, self.timeout)
            self._settle()
            assert [(ch.name, ch.record) for ch in recorder.changes()] == [("beta", b), ("gamma", c)]
            assert recorder.changes()[-1].revision == r3

        current = EventRecorder()
        store.watch(current, since=r3)
        self._settle()
        assert current.events == [], "watch(since=current revision) replayed old changes"
        d = self.writer(store).put("delta", document(4))
        change = current.wait_for_change(lambda ch: ch.name == "delta", self.timeout)
        self._settle()
        assert current.events == [Change("delta", d, change.revision)]
        assert change.revision > r3

    def test_two_watches_each_get_everything(
        self, store: Store, open_store: StoreFactory, namespace: str
    ) -> None:
        other = open_store(namespace)
        start = store.load().revision
        first, second = EventRecorder(), EventRecorder()
        store.watch(first, since=start)
        other.watch(second, since=start)
        self.writer(store).put("alpha", document(1))
        self.writer(other).put("beta", document(2))
        self.writer(store).delete("alpha")
        for recorder in (first, second):
            recorder.wait_for_changes(3, self.timeout)
        self._settle()
        assert first.changes() == second.changes()
        assert [(c.name, c.record is None) for c in first.changes()] == [
            ("alpha", False),
            ("beta", False),
            ("alpha", True),
        ]

    def test_failing_callback_does_not_end_the_watch(self, store: Store) -> None:
        recorder = EventRecorder(fail_first=True)
        store.watch(recorder, since=store.load().revision)
        self.writer(store).put("alpha", document(1))
        wait_until(lambda: recorder.calls >= 1, self.timeout, message="first callback never ran")
        self.writer(store).put("beta", document(2))
        change = recorder.wait_for_change(lambda c: c.name == "beta", self.timeout)
        assert change.record is not None

    def test_stop_is_silent(self, store: Store) -> None:
        recorder = EventRecorder(delay=0.05)
        watch = store.watch(recorder, since=store.load().revision)
        for i in range(5):
            self.writer(store).put(f"flag-{i}", document(i))
        wait_until(lambda: recorder.calls >= 1, self.timeout, message="no callback ran")
        watch.stop()
        assert not recorder.in_callback, "stop() returned while a callback was still running"
        calls = recorder.calls
        for i in range(3):
            self.writer(store).put(f"late-{i}", document(i))
        self._settle()
        assert recorder.calls == calls, "a callback ran after stop() returned"
        watch.stop()  # stopping twice is harmless

    def test_stop_from_inside_the_callback(self, store: Store) -> None:
        calls: list[WatchEvent] = []
        watches: list[Watch] = []

        def on_event(event: WatchEvent) -> None:
            calls.append(event)
            wait_until(lambda: watches, self.timeout, message="watch() did not return")
            watches[0].stop()

        watches.append(store.watch(on_event, since=store.load().revision))
        self.writer(store).put("alpha", document(1))
        wait_until(lambda: calls, self.timeout, message="callback never ran")
        self.writer(store).put("beta", document(2))
        self._settle()
        assert len(calls) == 1

    def test_reset_leads_to_reload(self, store: Store) -> None:
        self.writer(store).put("alpha", document(1))
        recorder = EventRecorder()
        store.watch(recorder, since=store.load().revision)
        self.force_reset(store)
        b = self.writer(store).put("beta", document(2))
        self.writer(store).delete("alpha")
        recorder.wait_for_reset(self.timeout)
        # What the client does on Reset: load everything again.
        state = store.load()
        assert {n: r.raw for n, r in state.records.items()} == {"beta": b.raw}
        assert store.get("alpha") is None
        # The watch carries on after a Reset: changes after the reload arrive.
        c = self.writer(store).put("gamma", document(3))
        change = recorder.wait_for_change(lambda ch: ch.name == "gamma", self.timeout)
        assert change.record == c
        assert change.revision > state.revision

    def test_lost_contact_then_reset(self, store: Store) -> None:
        """Losing the backend is told (``Disconnected``) within the stated bound, and a
        ``Reset`` follows once contact is back; changes then flow again."""
        bound = self.contact_bound
        if bound is None:
            # A store with no backend (memory) has no contact to lose: it must never
            # say it did, through changes and a Reset alike.
            recorder = EventRecorder()
            store.watch(recorder, since=store.load().revision)
            self.writer(store).put("alpha", document(1))
            self.force_reset(store)
            recorder.wait_for_reset(self.timeout)
            self.writer(store).put("beta", document(2))
            recorder.wait_for_change(lambda ch: ch.name == "beta", self.timeout)
            assert not [e for e in recorder.events if isinstance(e, Disconnected)]
            return
        self.writer(store).put("alpha", document(1))
        recorder = EventRecorder()
        store.watch(recorder, since=store.load().revision)
        before = time.time()
        restore = self.cut_off(store)
        try:
            lost = wait_until(
                lambda: [e for e in recorder.events if isinstance(e, Disconnected)],
                bound,
                message=lambda: f"no Disconnected within {bound} s: {recorder.events!r}\n{_threads()}",
            )
        finally:
            restore()
        assert lost[0].reason
        assert lost[0].since <= time.time()
        assert lost[0].since >= before - 2 * bound  # the last contact, not some old time

        def back_after_loss() -> bool:
            events = recorder.events
            first = next(i for i, e in enumerate(events) if isinstance(e, Disconnected))
            return any(isinstance(e, Reset | Resumed) for e in events[first:])

        wait_until(
            back_after_loss, self.timeout + bound, message=lambda: f"no Reset/Resumed: {recorder.events!r}"
        )
        if not self.resumes:
            assert not [e for e in recorder.events if isinstance(e, Resumed)]
        # Contact is back: writes go through (retried: a store may still be reconnecting) and
        # the watch delivers them.
        deadline = time.monotonic() + self.timeout + bound
        while True:
            try:
                b = self.writer(store).put("beta", document(2))
                break
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        recorder.wait_for_change(lambda ch: ch.name == "beta" and ch.record == b, self.timeout)

    def _outage(self, store: Store, recorder: EventRecorder, during: Callable[[], None]) -> list[WatchEvent]:
        """Cut ``store`` off, wait for its watch's ``Disconnected``, run ``during`` (writes
        through an uncut store), restore contact, wait for the ``Reset`` or ``Resumed``;
        the events from the ``Disconnected`` on."""
        bound = self.contact_bound
        assert bound is not None
        restore = self.cut_off(store)
        try:
            wait_until(
                lambda: [e for e in recorder.events if isinstance(e, Disconnected)],
                bound,
                message=lambda: f"no Disconnected within {bound} s: {recorder.events!r}",
            )
            during()
        finally:
            restore()

        def since_loss() -> list[WatchEvent]:
            events = recorder.events
            first = next(i for i, e in enumerate(events) if isinstance(e, Disconnected))
            return events[first:]

        wait_until(
            lambda: any(isinstance(e, Reset | Resumed) for e in since_loss()),
            self.timeout + bound,
            message=lambda: f"no Reset/Resumed: {recorder.events!r}",
        )
        return since_loss()

    def test_close_is_idempotent_and_stops_watches(
        self, store: Store, open_store: StoreFactory, namespace: str
    ) -> None:
        other = open_store(namespace)
        recorder = EventRecorder()
        store.watch(recorder, since=store.load().revision)
        store.close()
        store.close()
        self.writer(other).put("alpha", document(1))
        self._settle()
        assert recorder.events == [], "a closed store's watch delivered an event"
        assert other.get("alpha") is not None
        other.close()
        other.close()

    # ------------------------------------------------------------ namespaces

    def test_namespaces_are_isolated(self, open_store: StoreFactory) -> None:
        suffix = uuid.uuid4().hex[:8]
        one, two = open_store(f"iso-a-{suffix}"), open_store(f"iso-b-{suffix}")
        recorder = EventRecorder()
        two.watch(recorder, since=two.load().revision)
        self.writer(one).put("alpha", document(1))
        self.writer(one).put("shared", document(2))
        assert two.get("alpha") is None
        assert dict(two.load().records) == {}
        assert two.load().initialized is False
        mine = self.writer(two).put("shared", document(3))
        assert mine.version == 1
        recorder.wait_for_change(lambda c: c.name == "shared", self.timeout)
        self._settle()
        assert [(c.name, c.record) for c in recorder.changes()] == [("shared", mine)]
        one_shared = one.get("shared")
        assert one_shared is not None
        assert one_shared.raw == document(2)
        self.writer(two).delete("shared")
        assert one.get("shared") is not None

    def test_same_namespace_shared_between_store_objects(
        self, store: Store, open_store: StoreFactory, namespace: str
    ) -> None:
        other = open_store(namespace)
        record = self.writer(store).put("alpha", document(1))
        assert other.get("alpha") == record
        assert other.load().revision == store.load().revision
        with pytest.raises(ConflictError):
            self.writer(other).put("alpha", document(2), expect=0)

    def test_two_writers_interleaved(self, store: Store, open_store: StoreFactory, namespace: str) -> None:
        # Each store object may remember what it last wrote; the other's writes must still win
        # the compare-and-set, show in versions and in the history's "before" texts.
        other = open_store(namespace)
        assert self.writer(store).put("alpha", document(1)).version == 1
        assert self.writer(other).put("alpha", document(2)).version == 2
        with pytest.raises(ConflictError) as info:
            self.writer(store).put("alpha", document(3), expect=1)
        assert info.value.actual == 2
        assert self.writer(store).put("alpha", document(3), expect=2).version == 3
        assert self.writer(other).put("alpha", document(4)).version == 4
        assert self.writer(store).put("alpha", document(5)).version == 5
        self.writer(other).delete("alpha")
        with pytest.raises(NotFoundError):
            self.writer(store).delete("alpha")
        assert self.writer(store).put("alpha", document(6)).version == 1
        assert other.get("alpha") == store.get("alpha")
        befores = [(e.before, e.after) for e in store.history("alpha", limit=10) if e.version is not None]
        if befores:  # stores that keep history
            assert befores[:2] == [(None, document(6)), (document(4), document(5))]

    def test_initialized_marker(self, store: Store) -> None:
        fresh = store.load()
        assert fresh.initialized is False
        assert dict(fresh.records) == {}
        self.writer(store).put("alpha", document(1))
        assert store.load().initialized is True
        self.writer(store).delete("alpha")
        emptied = store.load()
        # Emptied on purpose through flagstaff: believed.
        assert dict(emptied.records) == {}
        assert emptied.initialized is True

    # --------------------------------------------------------------- history

    def test_history(self, store: Store) -> None:
        t0 = time.time()
        d1, d2, d3 = document(1), document(2), document(3)
        self.writer(store).put("alpha", d1, author="alice")
        self.writer(store).put("alpha", d2, author="bob")
        self.writer(store).put("beta", d3)
        self.writer(store).delete("alpha", author="carol")
        t1 = time.time()
        entries = store.history("alpha")
        if not self.keeps_history:
            assert all(e.name == "alpha" for e in entries)
            return
        assert [e.author for e in entries] == ["carol", "bob", "alice"]
        assert [(e.before, e.after) for e in entries] == [(d2, None), (d1, d2), (None, d1)]
        assert [e.version for e in entries[1:]] == [2, 1]
        revisions = [e.revision for e in entries]
        assert revisions == sorted(revisions, reverse=True)
        assert len(set(revisions)) == 3
        assert revisions[0] == store.load().revision
        # Clocks of a server on this machine: allow a little skew.
        assert all(t0 - 2 <= e.at <= t1 + 2 for e in entries), [e.at for e in entries]

        everything = store.history()
        assert [e.name for e in everything] == ["alpha", "beta", "alpha", "alpha"]
        assert everything[1].author is None
        assert everything[1].after == d3
        assert len(store.history(limit=2)) == 2
        assert store.history("nope") == []

    # ------------------------------------------------- atomic multi-flag writes

    def test_put_many_writes_and_deletes_at_once(self, store: Store) -> None:
        w = self.writer(store)
        a1 = w.put("alpha", document(1))
        w.put("beta", document(2))
        start = store.load().revision
        recorder = EventRecorder()
        store.watch(recorder, since=start)
        out = w.put_many(
            [
                Write("alpha", document(3), expect=a1.version),
                Write("beta", None, expect=1),
                Write("gamma", document(4), expect=0),
                Write("delta", document(5)),
            ],
            author="dora",
        )
        assert out == [
            Record("alpha", document(3), 2),
            None,
            Record("gamma", document(4), 1),
            Record("delta", document(5), 1),
        ]
        state = store.load()
        assert dict(state.records) == {r.name: r for r in out if r is not None}
        assert state.revision > start
        changes = recorder.wait_for_changes(4, self.timeout)
        self._settle()
        changes = recorder.changes()
        assert recorder.resets() == []
        # One group: ``more`` counts down to 0; the names and records are those written.
        assert [c.more for c in changes] == [3, 2, 1, 0]
        assert sorted((c.name, c.record) for c in changes) == sorted(
            [("alpha", out[0]), ("beta", None), ("gamma", out[2]), ("delta", out[3])]
        )
        revisions = [c.revision for c in changes]
        assert revisions == sorted(revisions) and revisions[0] > start
        assert revisions[-1] == state.revision
        assert w.put_many([]) == []
        # A single write after the group is a group of one.
        e = w.put("epsilon", document(6))
        change = recorder.wait_for_change(lambda ch: ch.name == "epsilon", self.timeout)
        assert (change.record, change.more) == (e, 0)

    def test_put_many_is_all_or_nothing(self, store: Store) -> None:
        w = self.writer(store)
        a = w.put("alpha", document(1))
        b = w.put("beta", document(2))
        before = store.load()
        history = store.history(limit=50)
        recorder = EventRecorder()
        store.watch(recorder, since=before.revision)
        refusals: list[tuple[list[Write], type[Exception], str]] = [
            # the last write's expectation fails: the first ones must not be applied either
            (
                [Write("gamma", document(3)), Write("alpha", document(4)), Write("beta", document(5), 7)],
                ConflictError,
                "beta",
            ),
            ([Write("alpha", document(4), expect=0), Write("gamma", document(3))], ConflictError, "alpha"),
            ([Write("gamma", document(3), expect=1), Write("alpha", None)], ConflictError, "gamma"),
            ([Write("alpha", None, expect=a.version), Write("absent", None)], NotFoundError, "absent"),
            ([Write("beta", document(6), expect=b.version), Write("beta", None)], StoreError, "beta"),
        ]
        for writes, error, name in refusals:
            with pytest.raises(error) as info:
                w.put_many(writes)
            assert name in str(info.value)
            if isinstance(info.value, ConflictError | NotFoundError):
                assert info.value.name == name
            assert self._same_state(store.load(), before), f"a refused put_many changed the store: {writes}"
        assert store.get("gamma") is None
        assert store.history(limit=50) == history
        self._settle()
        assert recorder.events == [], "a refused put_many reached a watch"

    def test_put_many_records_history(self, store: Store) -> None:
        w = self.writer(store)
        d1, d2, d3 = document(1), document(2), document(3)
        w.put("alpha", d1)
        w.put("beta", d2)
        w.put_many([Write("alpha", d3), Write("beta", None), Write("gamma", d1)], author="erin")
        if not self.keeps_history:
            return
        entries = store.history(limit=3)
        assert sorted((e.name, e.version, e.before, e.after) for e in entries) == [
            ("alpha", 2, d1, d3),
            ("beta", None, d2, None),
            ("gamma", 1, None, d1),
        ]
        assert {e.author for e in entries} == {"erin"}
        assert max(e.revision for e in entries) == store.load().revision
        assert [(e.before, e.after) for e in store.history("alpha")] == [(d1, d3), (None, d1)]

    #: Generation test: flags per put_many, put_manys, and the writer's pace (seconds apart).
    generation_flags: ClassVar[int] = 20
    generation_writes: ClassVar[int] = 200
    generation_pace: ClassVar[float] = 0.05

    def test_put_many_is_seen_whole_by_a_follower(self, store: Store) -> None:
        """A writer sets N flags to the same generation number, one put_many per generation;
        a client follows the store, and every snapshot it serves holds one generation in all
        N flags (or none of them, before the first write)."""
        names = [f"gen-{i:02d}" for i in range(self.generation_flags)]
        last = self.generation_writes - 1
        client = Client(store, Options(timeout=self.timeout))
        seen: set[int] = set()
        torn: list[str] = []
        done = threading.Event()

        def check() -> None:
            held = None
            while not done.is_set():
                snap = client.snapshot
                if snap is held:
                    time.sleep(0.002)
                    continue
                held = snap
                flags = snap.flags
                present = [n for n in names if n in flags]
                generations = {flags[n].value["description"] for n in present}
                if present and (len(present) != len(names) or len(generations) != 1):
                    torn.append(f"revision {snap.revision}: {len(present)} flags, {sorted(generations)}")
                elif present:
                    seen.add(int(generations.pop().split()[1]))
                if last in seen:
                    return

        checker = threading.Thread(target=check, name="generation-checker", daemon=True)
        checker.start()
        w = self.writer(store)
        try:
            expect = dict.fromkeys(names, 0)
            for g in range(self.generation_writes):
                doc = encode_document({"enabled": True, "description": f"generation {g}"})
                out = w.put_many([Write(n, doc, expect=expect[n]) for n in names])
                expect = {r.name: r.version for r in out if r is not None}
                time.sleep(self.generation_pace)
            checker.join(self.timeout * 2)
        finally:
            done.set()
            client.close()
        assert torn == [], f"snapshots showed a put_many half applied: {torn[:5]}"
        assert last in seen, f"the follower never showed the last generation (saw {len(seen)})"
        assert len(seen) > 1

    # ------------------------------------------------------- bad documents

    def _bad_values(self) -> list[bytes]:
        """What another program may write: each must end as one bad document."""
        values = [b'{"percentage": 300}']  # JSON, but no flag
        if self.bytes_per_document:
            values.append(b'{"description": "caf\xe9 \xff\xfe", "enabled": true}')  # latin-1 in JSON
        if self.keeps_raw_text:  # a store of parsed documents holds JSON values only
            values += [b'{"enabled": tru', b"\x1b[31m not a document"]
            if self.bytes_per_document:
                values.append(b"\xff\xfe\x00")  # the issue's UPDATE ... raw=X'FFFE00'
        return values

    def test_bad_value_is_one_record_and_the_watch_goes_on(self, store: Store) -> None:
        self.writer(store).put("good", document(1))
        self.writer(store).put("bad", document(2))
        recorder = EventRecorder()
        watch = store.watch(recorder, since=store.load().revision)
        for n, data in enumerate(self._bad_values()):
            self._one_bad_value(store, recorder, data, n)
        watch.stop()

    def _one_bad_value(self, store: Store, recorder: EventRecorder, data: bytes, n: int) -> None:
        self.write_raw(store, "bad", data)
        record = store.get("bad")
        assert record is not None and isinstance(record.raw, str), data
        with pytest.raises(ValidationError):
            parse_text("bad", record.raw)  # a bad value reads as one refused document
        state = store.load()  # never fails the whole load
        assert state.records["good"].raw == document(1 + n)
        assert isinstance(state.records["bad"].raw, str)
        # The watch is still delivering (a Reset is allowed for a write behind its back).
        self.writer(store).put("good", document(2 + n))

        def delivered() -> bool:
            return any(
                isinstance(e, Reset)
                or (
                    isinstance(e, Change)
                    and e.name == "good"
                    and e.record is not None
                    and e.record.raw == document(2 + n)
                )
                for e in recorder.events
            )

        wait_until(delivered, self.timeout, message=f"the watch stopped after {data!r}")
        recorder.clear()

    def test_client_skips_and_names_a_bad_document_and_repair_brings_it_back(self, store: Store) -> None:
        self.writer(store).put("good", document(1))
        self.writer(store).put("bad", document(2))
        client = Client(store, Options(timeout=self.timeout))
        try:
            assert client.status().state is State.LIVE
            last_good = document(2)
            for n, data in enumerate(self._bad_values()):
                last_good = self._client_round(client, store, data, n, last_good)
                assert client.status().state is State.LIVE
        finally:
            client.close()

    def _client_round(self, client: Client, store: Store, data: bytes, n: int, last_good: str) -> str:
        self.write_raw(store, "bad", data)
        wait_until(
            lambda: "bad" in client.status().invalid,
            self.timeout,
            message=lambda: f"{data!r} not named: {client.status()}",
        )
        # The last good version is kept...
        assert client.snapshot.flags["bad"].value == json.loads(last_good)
        # ...every other flag keeps updating...
        good = document(10 + n)
        self.writer(store).put("good", good)
        wait_until(
            lambda: client.snapshot.flags["good"].value == json.loads(good),
            self.timeout,
            message=f"other flags stopped updating after {data!r}",
        )
        assert "bad" in client.status().invalid
        # ...and repairing the value brings the flag back, with no restart.
        repaired = document(20 + n)
        self.writer(store).put("bad", repaired)
        wait_until(
            lambda: (
                "bad" not in client.status().invalid
                and client.snapshot.flags["bad"].value == json.loads(repaired)
            ),
            self.timeout,
            message=lambda: f"not repaired after {data!r}: {client.status()}",
        )
        return repaired


def _threads() -> str:
    """Where every flagstaff thread is: said when a watch missed its bound, so a failure on a
    loaded CI machine shows whether the watch was blocked (and on what) or never scheduled."""
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        name = names.get(ident, "?")
        if "flagstaff" in name or ident == threading.main_thread().ident:
            out.append(f"--- thread {name}:\n" + "".join(traceback.format_stack(frame, limit=8)))
    return "\n".join(out)


class ResumingStoreConformance(StoreConformance):
    """The checks of a store that resumes a watch losslessly after an outage (it delivers
    :class:`~flagstaff.stores.base.Resumed` after the outage's changes, not ``Reset``).
    Subclass it instead of :class:`StoreConformance` and provide ``make_uncut_store``."""

    resumes: ClassVar[bool] = True

    def make_uncut_store(self, namespace: str) -> Store:
        """A store on the same backend, in ``namespace``, that ``cut_off`` does not cut off."""
        raise NotImplementedError(f"{type(self).__name__} resumes but defines no make_uncut_store")

    def test_lost_contact_then_resumed_without_reload(self, open_store: StoreFactory, namespace: str) -> None:
        """A store that resumes: a write made elsewhere during the outage is delivered, then
        ``Resumed`` (no ``Reset``), and a client is live with it again without a reload."""
        store = open_store(namespace)
        outside = self.make_uncut_store(namespace)
        counted = _CountingLoads(store)
        client = None
        try:
            self.writer(store).put("alpha", document(1))
            recorder = EventRecorder()
            store.watch(recorder, since=store.load().revision)
            client = live = Client(counted, Options(timeout=self.timeout))
            assert live.status().state is State.LIVE
            # Both watches following (a watch cut off before it ever subscribed may Reset).
            ready = self.writer(store).put("ready", document(0))
            recorder.wait_for_change(lambda ch: ch.record == ready, self.timeout)
            wait_until(lambda: "ready" in live.snapshot.flags, self.timeout, message="client not following")
            self._settle()
            loads = counted.loads
            written: list[Record] = []

            def write() -> None:
                wait_until(lambda: live.status().state is State.STALE, self.timeout)
                written.append(outside.put("beta", document(2)))

            events = self._outage(store, recorder, write)
            assert not [e for e in events if isinstance(e, Reset)], events
            resumed = next(i for i, e in enumerate(events) if isinstance(e, Resumed))
            resumed_event = events[resumed]
            assert isinstance(resumed_event, Resumed) and resumed_event.reason
            delivered = [i for i, e in enumerate(events) if isinstance(e, Change) and e.record == written[0]]
            assert delivered and delivered[0] < resumed, f"Resumed came before the change: {events!r}"
            wait_until(
                lambda: live.status().state is State.LIVE and "beta" in live.snapshot.flags,
                self.timeout,
                message=lambda: f"client not live with beta: {live.status()!r}",
            )
            assert counted.loads == loads, "the client reloaded after Resumed"
            assert live.status().last_error is None
            # Changes flow on.
            c = self.writer(store).put("gamma", document(3))
            recorder.wait_for_change(lambda ch: ch.record == c, self.timeout)
        finally:
            if client is not None:
                client.close()
            outside.close()


class ReplayingStoreConformance(ResumingStoreConformance):
    """A resuming store whose resume replays a log (etcd's revisions, a history table): when
    the outage's changes are no longer in it, the reconnect must be a ``Reset``. Provide
    ``lose_history`` as well."""

    def lose_history(self, store: Store) -> None:
        """Make the changes written since the watch was cut off unrecoverable (``store`` is
        an uncut store), so that the reconnect must deliver ``Reset``."""
        raise NotImplementedError(f"{type(self).__name__} defines no lose_history(store)")

    def test_lost_contact_with_history_lost_resets(self, open_store: StoreFactory, namespace: str) -> None:
        """A store that resumes still delivers ``Reset`` when the outage's changes cannot be
        replayed (compacted, trimmed): never ``Resumed``; a client reloads and is live."""
        store = open_store(namespace)
        outside = self.make_uncut_store(namespace)
        counted = _CountingLoads(store)
        client = None
        try:
            self.writer(store).put("alpha", document(1))
            recorder = EventRecorder()
            store.watch(recorder, since=store.load().revision)
            client = live = Client(counted, Options(timeout=self.timeout))
            loads = counted.loads

            def write() -> None:
                outside.put("beta", document(2))
                self.lose_history(outside)

            events = self._outage(store, recorder, write)
            assert [e for e in events if isinstance(e, Reset)], events
            assert not [e for e in events if isinstance(e, Resumed)], events
            wait_until(
                lambda: live.status().state is State.LIVE and "beta" in live.snapshot.flags,
                self.timeout,
                message=lambda: f"client not live with beta: {live.status()!r}",
            )
            assert counted.loads > loads
        finally:
            if client is not None:
                client.close()
            outside.close()


class _CountingLoads:
    """A store that counts its ``load()`` calls (what a follower's reload costs)."""

    def __init__(self, store: Store) -> None:
        self.wrapped = store
        self.url = store.url
        self.loads = 0

    def load(self) -> StoreState:
        self.loads += 1
        return self.wrapped.load()

    def get(self, name: str) -> Record | None:
        return self.wrapped.get(name)

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        return self.wrapped.put(name, raw, expect=expect, author=author)

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        self.wrapped.delete(name, expect=expect, author=author)

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        return self.wrapped.put_many(writes, author=author)

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        return self.wrapped.watch(on_event, since)

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        return self.wrapped.history(name, limit)

    def close(self) -> None:
        """The wrapped store is the suite's to close."""
