"""The one place the compatibility layers touch flagstaff's storage and engine.

:class:`FlagView` serves every flag of a store from a
:class:`~flagstaff.follower.Follower` (one watch; the client's ordered apply,
bad-document and health rules) and adds *read-your-writes* for this process's
own writes: the seeds' APIs are read-your-writes (hanoi's ``enable(f)``
followed by ``is_enabled(f)`` must see the change), while a follower shows a
write once its watch delivers it. Writes go through
:class:`~flagstaff.admin.Admin`, the one writer: the same validation, the same
compare-and-set retries and the same history author rules as the CLI and the
HTTP API.

Ordering: a flag this view wrote is served from the view's own table, which
holds the flag's *current* record, re-read from the store under one lock after
each own write and whenever the follower reports a change to that flag. So a
late watch event can never roll the view back to a document older than its own
write. A full :meth:`FlagView.reload` (the store was emptied behind its back)
empties that table.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flagstaff.admin import Admin
from flagstaff.context import Context
from flagstaff.decision import Decision
from flagstaff.errors import NotFoundError, ValidationError
from flagstaff.evaluate import evaluate, unknown
from flagstaff.follower import Follower, SnapshotChange
from flagstaff.model import Flag, parse_text
from flagstaff.runtime import Runtime, default_runtime
from flagstaff.stores import Store, open_store

__all__ = ["FlagView"]

log = logging.getLogger("flagstaff.compat")

_CAS_ATTEMPTS = 20


class FlagView:
    """Parsed flags of one store, current, with read-your-writes for own writes.

    Reads (:meth:`get`, :meth:`evaluate`) take no lock and do no I/O. The
    constructor loads every flag and raises if the store cannot be loaded.
    """

    def __init__(self, store: Store | str, *, runtime: Runtime | None = None, author: str = "compat") -> None:
        runtime = runtime or default_runtime()
        self._owns_store = isinstance(store, str)
        self.store: Store = open_store(store, runtime=runtime) if isinstance(store, str) else store
        self._admin = Admin(self.store, author=author, retries=_CAS_ATTEMPTS)
        self._lock = runtime.lock()
        # Flags this view wrote, as the store holds them now (None: deleted). Replaced, not
        # mutated, so readers take no lock.
        self._own: Mapping[str, Flag | None] = {}
        self._closed = False
        self._follower = Follower(self.store, runtime=runtime)
        try:
            self._follower.reload()
        except BaseException:
            self.close()
            raise
        self._follower.on_change(self._changed)

    # -- reads -----------------------------------------------------------------

    def get(self, name: str) -> Flag | None:
        own = self._own
        if name in own:
            return own[name]
        return self._follower.snapshot.get(name)

    def names(self) -> Iterator[str]:
        return iter(self._current())

    def flags(self) -> list[Flag]:
        return list(self._current().values())

    def evaluate(self, name: str, context: Context) -> Decision:
        flag = self.get(name)
        if flag is None:
            return unknown(name)
        return evaluate(flag, context, time.time() if flag.needs_clock else None)

    def _current(self) -> Mapping[str, Flag]:
        flags = self._follower.snapshot.flags
        own = self._own
        if not own:
            return flags
        merged = dict(flags)
        for name, flag in own.items():
            if flag is None:
                merged.pop(name, None)
            else:
                merged[name] = flag
        return merged

    # -- writes ----------------------------------------------------------------

    def update(self, name: str, change: Callable[[Any], Any]) -> Flag | None:
        """Read-modify-write one document (:meth:`Admin.update`: validated, compare-and-set,
        retried on conflict). ``change`` gets the current document (``None`` when absent)
        and returns the new one. Raises ``ValidationError`` for a bad document and
        ``ConflictError`` if the flag keeps changing underneath."""
        # The callback gets its own copy: Admin compares what it returns with what it was given.
        self._admin.update(name, lambda doc: change(copy.deepcopy(doc)), create=True)
        self._refresh(name)
        return self.get(name)

    def delete(self, name: str) -> None:
        """Delete one flag (nothing to do when absent)."""
        try:
            self._admin.delete(name)
        except NotFoundError:
            pass
        finally:
            self._refresh(name)

    def put(self, name: str, document: Any) -> Flag:
        """Write a whole document (validated)."""
        self._admin.set(name, document)
        self._refresh(name)
        flag = self.get(name)
        assert flag is not None, "a flag just written is served"
        return flag

    def reload(self) -> None:
        """Re-read every flag now, for a change made behind the store's back
        (a ``FLUSHDB``); the watch would deliver it too, only later."""
        with self._lock:
            self._follower.reload()
            self._own = {}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        follower = getattr(self, "_follower", None)
        if follower is not None:
            follower.close()
        if self._owns_store:
            self.store.close()

    # -- keeping current -------------------------------------------------------

    def _changed(self, change: SnapshotChange) -> None:
        """On the follower's dispatcher: re-read the flags this view wrote that changed."""
        own = self._own
        names = {c.name for c in change.changes} | change.names
        for name in sorted(n for n in names if n in own):
            try:
                self._refresh(name)
            except Exception:  # a store hiccup: the next change or reload repairs the view
                log.exception("could not re-read flag %r from %s", name, self.store.url)

    def _refresh(self, name: str) -> None:
        with self._lock:
            record = self.store.get(name)
            if record is None:
                self._own = {**self._own, name: None}
                return
            try:
                # Linked to the follower's segments and flags; a change to one of them names
                # this flag too (SnapshotChange.names), so _changed links it again.
                flag = self._follower.snapshot.link(parse_text(name, record.raw))
            except ValidationError as exc:
                log.warning("skipping invalid flag %r in %s: %s", name, self.store.url, exc)
                return
            self._own = {**self._own, name: flag}
