"""The change feed behind ``GET /api/v1/events`` (server-sent events).

One store watch per server fans out to every open stream. The watch callback
runs on the store's task and only hands each change to the subscribers' event
loops (``call_soon_threadsafe``), so a slow stream never delays the store. Each
subscriber has a bounded queue; one that falls that far behind is closed (its
client reconnects and re-reads the flags) rather than holding memory.

A ``Reset`` from the store (it may have missed changes) is answered by a full
reload, compared with what was last sent, so subscribers still get one event
per flag that changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from flagstaff.errors import FlagstaffError
from flagstaff.model import decode_document
from flagstaff.stores.base import Change, Record, Reset, Store, Watch, WatchEvent

__all__ = ["ChangeEvent", "EventBroker", "Subscription"]

log = logging.getLogger("flagstaff.http.events")

QUEUE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A flag was written (``document`` set) or deleted (``document`` None)."""

    name: str
    version: int | None
    document: Any
    revision: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "document": self.document,
                "revision": self.revision,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )


class Subscription:
    """One stream's queue of events; ``None`` in the queue means "closed"."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[ChangeEvent | None] = asyncio.Queue(QUEUE_SIZE)
        self.closed = False

    def _offer(self, event: ChangeEvent | None) -> None:  # runs on the subscriber's loop
        if self.closed:
            return
        if event is None or self.queue.full():
            self.closed = True
            while not self.queue.empty():  # make room for the end marker
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(event)


class EventBroker:
    """Follows a store and fans each change out to subscribers. Thread-safe."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()
        self._records: dict[str, Record] = {}
        self._watch: Watch | None = None
        self._stopped = threading.Event()
        self.revision = 0

    def start(self) -> None:
        """Load and watch the store; if it cannot be reached now, keep trying on a thread
        (the server still starts, and serves what its client has)."""
        if not self._try_start():
            threading.Thread(target=self._retry, name="flagstaff-events-start", daemon=True).start()

    def _try_start(self) -> bool:
        try:
            state = self.store.load()
        except FlagstaffError as exc:
            log.warning("event feed: cannot load the store yet (%s); retrying", exc)
            return False
        with self._lock:
            if self._stopped.is_set():
                return True
            self._records = dict(state.records)
            self.revision = state.revision
            self._watch = self.store.watch(self._on_event, state.revision)
        return True

    def _retry(self) -> None:
        delay = 0.5
        while not self._stopped.wait(delay) and not self._try_start():
            delay = min(delay * 2, 10.0)

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        with self._lock:
            subscribers, self._subscribers = self._subscribers, set()
        for sub in subscribers:
            _post(sub, None)

    @property
    def following(self) -> bool:
        """Whether the feed is watching the store (false until the store was first reached)."""
        return self._watch is not None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    # ------------------------------------------------------------------ store side

    def _on_event(self, event: WatchEvent) -> None:
        if isinstance(event, Change):
            self._apply(event)
        elif isinstance(event, Reset):
            log.info("event feed: store reset (%s); reloading", event.reason)
            self._reload()

    def _apply(self, change: Change) -> None:
        if change.revision <= self.revision:
            return
        self.revision = change.revision
        if change.record is None:
            self._records.pop(change.name, None)
        else:
            self._records[change.name] = change.record
        self._publish(_event(change.name, change.record, change.revision))

    def _reload(self) -> None:
        try:
            state = self.store.load()
        except FlagstaffError as exc:
            log.warning("event feed: reload failed: %s", exc)
            return
        old, self._records = self._records, dict(state.records)
        self.revision = max(self.revision, state.revision)
        for name in sorted(set(old) | set(self._records)):
            before, after = old.get(name), self._records.get(name)
            if before != after:
                self._publish(_event(name, after, state.revision))

    def _publish(self, event: ChangeEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            _post(sub, event)


def _post(sub: Subscription, event: ChangeEvent | None) -> None:
    try:
        sub.loop.call_soon_threadsafe(sub._offer, event)
    except RuntimeError:  # the subscriber's loop is closed: the stream is gone
        log.debug("event feed: a subscriber's loop is closed")


def _event(name: str, record: Record | None, revision: int) -> ChangeEvent:
    if record is None:
        return ChangeEvent(name, None, None, revision)
    try:
        document = decode_document(record.raw)
    except FlagstaffError:
        document = record.raw  # an invalid document is shown as its text
    return ChangeEvent(name, record.version, document, revision)
