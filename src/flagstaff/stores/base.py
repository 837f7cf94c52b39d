"""The Store protocol: what every backend provides, and what it guarantees.

A store holds flag documents as text, by name, in one namespace. It knows
nothing about what a flag means; the client parses and validates. Every store
runs the one conformance suite in :mod:`flagstaff.testing.conformance`.

Versions and revisions
    Every flag has a ``version`` that increases on each write to it (the first
    write gives version 1). The store as a whole has a ``revision`` that
    increases on every change to any flag; a :class:`Change` carries the
    revision it produced. Both are plain ints compared with ``<``.

Compare-and-set
    ``put`` and ``delete`` take ``expect``: ``None`` writes unconditionally,
    ``0`` requires that the flag does not exist, ``n > 0`` requires it to be at
    version ``n``. A mismatch raises :class:`~flagstaff.errors.ConflictError`
    and changes nothing.

Atomic multi-flag writes
    ``put_many(writes)`` applies several :class:`Write` s (puts and deletes) as
    one: every ``expect`` is checked first, and one mismatch raises
    ``ConflictError`` naming that flag, with nothing changed (a delete of an
    absent flag raises ``NotFoundError``, likewise). Each flag gets its own
    history entry. A watch delivers the changes of one ``put_many`` one after
    the other, in the order of ``writes``, with ``Change.more`` counting down
    to 0; their revisions never decrease (a backend that gives the whole write
    one revision, like etcd, gives it to each of them). A follower applies a
    group only once ``more`` is 0, so no reader ever sees half of it. A name
    may appear only once per call; stores may cap the number of writes per
    call (etcd: :data:`flagstaff.stores.etcd.MAX_WRITES`), refusing more with
    ``StoreError`` before anything is sent.

Watches
    ``watch(on_event, since)`` delivers, on a background task of the store's
    runtime, every change with a revision greater than ``since``, in revision
    order. A store that may have missed changes (a reconnect, a compaction, a
    lost notification) delivers :class:`Reset` instead of guessing; the client
    then calls ``load()`` again. A store that loses contact with its backend
    (a refused or silent connection, an unreadable file) delivers
    :class:`Disconnected` within its stated bound (docs/stores.md), once per
    outage, and once contact is back either a ``Reset`` (the subscriber reloads)
    or, when the store can show it missed nothing, a :class:`Resumed`: every
    change made during the outage has then been delivered, *before* the
    ``Resumed``, so the subscriber is current again without a reload (a fleet
    that reconnects at once does not reload at once). A store that cannot prove
    completeness (a compaction, a gap in the history, notices that may be lost)
    sends ``Reset``. A ``Resumed`` with no ``Disconnected`` before it tells
    nothing new and may be ignored. After ``Watch.stop()`` returns no further
    callbacks are made ("stop is silent"). Callbacks must be quick; the client
    hands slow work to its own task.

Emptiness
    ``load()`` reports ``initialized``: whether the namespace carries the marker
    flagstaff writes with the first change through it. A store that comes back
    empty *and* uninitialized (wiped, or a fresh server) is not believed by the
    client, which keeps its last good flags.

Bad documents
    A value that is not UTF-8 (written by another program) is still one
    record: stores read bytes with :func:`decode_raw`, which keeps the bad
    bytes as lone surrogates, and :func:`flagstaff.model.decode_document`
    refuses such text with a ``ValidationError``. So a bad value is one bad
    document, skipped and named by the client; it never fails ``load()`` or
    ends a watch, and the next good write to it is delivered as usual. A *name*
    that is not UTF-8 names no flag: the store skips that value and logs it.

Thread safety
    Every method may be called from any thread or greenlet; ``close()`` is
    idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeAlias

from flagstaff.errors import StoreError

__all__ = [
    "Change",
    "Disconnected",
    "HistoryEntry",
    "Record",
    "Reset",
    "Resumed",
    "Store",
    "StoreState",
    "Watch",
    "WatchEvent",
    "Write",
    "check_writes",
    "decode_raw",
    "is_text",
]


@dataclass(frozen=True, slots=True)
class Record:
    """One flag as stored: its document text and version."""

    name: str
    raw: str
    version: int


@dataclass(frozen=True, slots=True)
class StoreState:
    """Everything in a namespace at one revision."""

    revision: int
    records: Mapping[str, Record] = field(default_factory=lambda: MappingProxyType({}))
    initialized: bool = True


@dataclass(frozen=True, slots=True)
class Change:
    """A flag was written (``record``) or deleted (``record is None``)."""

    name: str
    record: Record | None
    revision: int
    more: int = 0
    """How many changes of the same atomic write (``put_many``) are still to come
    after this one; a follower applies a group only once ``more`` reaches 0, so
    a reader never sees half of it."""


@dataclass(frozen=True, slots=True)
class Write:
    """One part of an atomic multi-flag write (``put_many``): ``raw`` is the new
    document text, or ``None`` to delete; ``expect`` is compare-and-set as in
    ``put``/``delete``."""

    name: str
    raw: str | None
    expect: int | None = None


@dataclass(frozen=True, slots=True)
class Reset:
    """The watch may have missed changes: reload everything."""

    reason: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The watch lost contact with the backend: changes may be missed until a
    :class:`Reset` or a :class:`Resumed` follows (sent once contact is back)."""

    reason: str
    since: float
    """When the watch last had confirmed contact (``time.time()``)."""


@dataclass(frozen=True, slots=True)
class Resumed:
    """Contact with the backend is back and nothing was missed: every change since
    the last one delivered before the :class:`Disconnected` has been delivered,
    before this event. The subscriber is current again without a reload."""

    reason: str


WatchEvent: TypeAlias = Change | Reset | Disconnected | Resumed


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One recorded change: who made it, when, and the text before and after."""

    name: str
    revision: int
    version: int | None
    at: float
    author: str | None
    before: str | None
    after: str | None


def decode_raw(data: bytes | str) -> str:
    """A stored value as text. Bytes that are not UTF-8 are kept as lone
    surrogates (``surrogateescape``): nothing is lost (``encode("utf-8",
    "surrogateescape")`` gives the bytes back) and ``decode_document`` refuses
    the text, naming the first bad byte. Never raises."""
    if isinstance(data, str):
        return data
    return bytes(data).decode("utf-8", "surrogateescape")


def is_text(text: str) -> bool:
    """Whether ``text`` holds no undecodable bytes (see :func:`decode_raw`). A flag
    *name* that is not text names no flag: stores skip it (and log it) rather
    than fail a load or a watch on it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_writes(writes: Sequence[Write]) -> None:
    """Refuse a ``put_many`` that names a flag twice (which write would win is no
    one's guess), or whose ``expect`` is negative: :class:`~flagstaff.errors.StoreError`,
    raised before anything is written."""
    seen: set[str] = set()
    for write in writes:
        if write.name in seen:
            raise StoreError(f"put_many names flag {write.name!r} twice: one write per flag")
        if write.expect is not None and write.expect < 0:
            raise StoreError(f"put_many: expect for {write.name!r} must be None or >= 0, not {write.expect}")
        seen.add(write.name)


class Watch(Protocol):
    def stop(self) -> None:
        """Stop delivering events; returns once no callback can run any more."""


class Store(Protocol):
    """A backend holding flag documents. See the module doc for guarantees."""

    url: str

    def load(self) -> StoreState:
        """Every record in the namespace, at one consistent revision."""

    def get(self, name: str) -> Record | None:
        """One record, or ``None`` if absent."""

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        """Write ``raw`` (compare-and-set on ``expect``); returns the new record."""

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        """Remove a flag (compare-and-set on ``expect``); ``NotFoundError`` if absent."""

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        """Apply ``writes`` all or nothing (see the module doc); the new record of
        each write, in order (``None`` for a delete)."""

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        """Deliver changes after revision ``since``, in order (see module doc)."""

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        """Recorded changes, newest first (all flags when ``name`` is None);
        stores that keep no history return what they have, possibly nothing."""

    def close(self) -> None:
        """Release connections and stop watches. Idempotent."""
