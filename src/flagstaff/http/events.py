"""The change feed behind ``GET /api/v1/events`` (server-sent events).

The feed relays the changes of the server's client's
:class:`~flagstaff.follower.Follower` (one watch per store per server; the
changes are parsed once, by the follower). The follower hands each batch of
changed records to the broker on its dispatcher task, and the broker only hands
each change to the subscribers' event loops (``call_soon_threadsafe``), so a
slow stream never delays the store or the client. Each subscriber has a bounded
queue; one that falls that far behind is closed (its client reconnects and
re-reads the flags) rather than holding memory.

A ``Reset`` from the store (it may have missed changes) is answered by the
follower's full reload; the follower reports one change per record that
differs from what it held, so subscribers still get one event per flag that
changed. An invalid document is relayed too, as its text (escaped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flagstaff.document import decode_document, printable_text
from flagstaff.errors import FlagstaffError
from flagstaff.follower import Follower, SnapshotChange
from flagstaff.stores.base import Record

__all__ = ["ChangeEvent", "EventBroker", "Subscription"]

log = logging.getLogger("flagstaff.http.events")

QUEUE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A flag was written (``document`` set) or deleted (``document`` None).

    ``frame`` is the whole server-sent-events frame, encoded once when the event is
    made (on the follower's dispatcher task, not an event loop): every subscriber is handed
    the same bytes. Serialising per subscriber stalled the loop for over a second
    with 100 streams and a 3.9 MB document.
    """

    name: str
    version: int | None
    document: Any
    revision: int
    frame: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        frame = f"id: {self.revision}\nevent: change\ndata: {self.to_json()}\n\n"
        # surrogatepass: a document read from a store is text; never fail the whole feed on it.
        object.__setattr__(self, "frame", frame.encode("utf-8", "surrogatepass"))

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
    """Relays a follower's record changes to subscribers. Thread-safe."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        """Subscribe to the follower (which keeps trying a store it cannot reach yet:
        the server still starts, and serves what its client has)."""
        with self._lock:
            if self._unsubscribe is None:
                self._unsubscribe = self.follower.on_change(self._on_change)

    def stop(self) -> None:
        with self._lock:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            subscribers, self._subscribers = self._subscribers, set()
        if unsubscribe is not None:
            unsubscribe()
        for sub in subscribers:
            _post(sub, None)

    @property
    def revision(self) -> int:
        """The store revision the feed has reached."""
        return self.follower.snapshot.revision

    @property
    def following(self) -> bool:
        """Whether the feed is relaying the store (false until the store was first reached)."""
        return self._unsubscribe is not None and self.follower.loaded

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

    # ------------------------------------------------------------------ follower side

    def _on_change(self, change: SnapshotChange) -> None:
        if not change.changes:
            return  # no record changed (a client's overrides)
        with self._lock:
            subscribers = list(self._subscribers)
        for one in change.changes:
            event = _event(one.name, one.record, one.revision)
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
        document = printable_text(record.raw)  # an invalid document is shown as its text, escaped
    return ChangeEvent(name, record.version, document, revision)
