"""The one place the compatibility layers touch flagstaff's storage and engine.

:class:`FlagView` holds every flag of a store, parsed, in an immutable
:class:`~flagstaff.snapshot.Snapshot` kept fresh by the store's watch, and applies
this process's own writes at once (the seeds' APIs are read-your-writes: hanoi's
``enable(f)`` followed by ``is_enabled(f)`` must see the change). When the
client (``flagstaff.connect``) offers the same guarantee, this module is the
only one to change.

Ordering: every update of the snapshot (a watch event, an own write, a reload)
re-reads the flag's *current* record from the store under one lock, so a late
watch event can never roll the view back to an older document.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from flagstaff.context import Context
from flagstaff.decision import Decision
from flagstaff.errors import ConflictError, ValidationError
from flagstaff.evaluate import evaluate, unknown
from flagstaff.model import Flag, decode_document, encode_document, parse_flag
from flagstaff.runtime import Runtime, default_runtime
from flagstaff.snapshot import Snapshot
from flagstaff.stores import Change, Reset, Store, Watch, WatchEvent, open_store

__all__ = ["FlagView"]

log = logging.getLogger("flagstaff.compat")

_CAS_ATTEMPTS = 20


class FlagView:
    """Parsed flags of one store, current, with read-your-writes for own writes.

    Reads (:meth:`get`, :meth:`evaluate`) take no lock and do no I/O.
    """

    def __init__(self, store: Store | str, *, runtime: Runtime | None = None, author: str = "compat") -> None:
        self._runtime = runtime or default_runtime()
        self._owns_store = isinstance(store, str)
        self.store: Store = open_store(store, runtime=self._runtime) if isinstance(store, str) else store
        self._author = author
        self._lock = self._runtime.lock()
        self._snapshot = Snapshot()
        self._closed = False
        self._watch: Watch | None = None
        with self._lock:
            revision = self._reload()
        self._watch = self.store.watch(self._on_event, revision)

    # -- reads -----------------------------------------------------------------

    def get(self, name: str) -> Flag | None:
        return self._snapshot.get(name)

    def names(self) -> Iterator[str]:
        return iter(self._snapshot)

    def flags(self) -> list[Flag]:
        return list(self._snapshot.flags.values())

    def evaluate(self, name: str, context: Context) -> Decision:
        flag = self._snapshot.get(name)
        if flag is None:
            return unknown(name)
        return evaluate(flag, context, time.time() if flag.needs_clock else None)

    # -- writes ----------------------------------------------------------------

    def update(self, name: str, change: Callable[[Any], Any]) -> Flag | None:
        """Read-modify-write one document with compare-and-set, retried on conflict.

        ``change`` gets the current document (``None`` when absent) and returns the
        new one, or ``None`` to delete it. Raises ``ValidationError`` for a bad
        document and ``ConflictError`` if the flag keeps changing underneath.
        """
        for _ in range(_CAS_ATTEMPTS):
            record = self.store.get(name)
            current = decode_document(record.raw) if record is not None else None
            new = change(json.loads(json.dumps(current)))  # the callback gets its own copy
            expect = record.version if record is not None else 0
            try:
                if new is None:
                    if record is not None:
                        self.store.delete(name, expect=expect, author=self._author)
                    self._refresh(name)
                    return None
                flag = parse_flag(name, new)  # validate before writing
                self.store.put(name, encode_document(new), expect=expect, author=self._author)
            except ConflictError:
                continue
            self._refresh(name)
            return flag
        raise ConflictError(name, None, None)

    def put(self, name: str, document: Any) -> Flag:
        """Write a whole document unconditionally."""
        flag = parse_flag(name, document)
        self.store.put(name, encode_document(document), author=self._author)
        self._refresh(name)
        return flag

    def reload(self) -> None:
        """Re-read every flag now, for a change made behind the store's back
        (a ``FLUSHDB``); the watch would deliver it too, only later."""
        with self._lock:
            self._reload()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.stop()
        if self._owns_store:
            self.store.close()

    # -- keeping current -------------------------------------------------------

    def _on_event(self, event: WatchEvent) -> None:
        if self._closed:
            return
        try:
            if isinstance(event, Reset):
                with self._lock:
                    self._reload()
            elif isinstance(event, Change):
                self._refresh(event.name)
        except Exception:  # a store hiccup: the next event or reload repairs the view
            log.exception("could not apply %r from %s", event, self.store.url)

    def _refresh(self, name: str) -> None:
        with self._lock:
            record = self.store.get(name)
            snap = self._snapshot
            now = time.time()
            if record is None:
                self._snapshot = snap.without(name, snap.revision, now)
                return
            flag = self._parse(name, record.raw)
            if flag is not None:
                self._snapshot = snap.with_flag(flag, snap.revision, now)

    def _reload(self) -> int:
        state = self.store.load()
        flags: dict[str, Flag] = {}
        for name, record in state.records.items():
            flag = self._parse(name, record.raw)
            if flag is not None:
                flags[name] = flag
        self._snapshot = Snapshot(flags, state.revision, time.time())
        return state.revision

    def _parse(self, name: str, raw: str) -> Flag | None:
        try:
            return parse_flag(name, decode_document(raw))
        except ValidationError as exc:
            log.warning("skipping invalid flag %r in %s: %s", name, self.store.url, exc)
            return None
