"""The validated write path: every change an operator makes goes through here.

The CLI uses it today and the HTTP API will tomorrow, so both refuse the same
invalid documents with the same messages. Each operation is a read-modify-write
guarded by compare-and-set (``expect=version``): if another writer changed the
flag in between, the store raises :class:`~flagstaff.errors.ConflictError` and
the operation is re-read and re-applied, a bounded number of times. A document
is validated with :func:`~flagstaff.model.parse_flag` *before* it is written;
nothing invalid ever reaches a store through this module.

The kill switch
    ``disable`` turns a flag off for everyone and keeps everything else, so
    ``enable`` can bring it back exactly: an object gets ``"enabled": false``;
    a bare percentage ``25`` becomes ``{"enabled": false, "percentage": 25}``;
    ``"on"``/``"off"``/``true``/``false`` become ``"off"``.

    ``enable`` removes the kill. If what is left has no targeting at all (it
    would still be off for everyone, e.g. a flag that was ``"off"``), it is
    refused with :class:`NothingToEnable` rather than guessing; pass
    ``everyone=True`` (``flagstaff enable --all``) to turn the flag on for
    everyone (``"on"``, or ``"enabled": "on"`` in an object, which keeps the
    targeting for when the flag is narrowed again).
"""

from __future__ import annotations

import getpass
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flagstaff.decision import Reason
from flagstaff.errors import ConflictError, FlagstaffError, NotFoundError, Problem, ValidationError
from flagstaff.model import decode_document, encode_document, parse_flag
from flagstaff.stores.base import Record, Store

__all__ = [
    "Admin",
    "CopyResult",
    "DiffEntry",
    "DiffKind",
    "NothingToEnable",
    "Outcome",
    "default_author",
    "diff_documents",
    "read_documents",
    "validate_documents",
]

log = logging.getLogger("flagstaff.admin")

DEFAULT_RETRIES = 8

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called as a bulk operation advances."""


class NothingToEnable(FlagstaffError):
    """``enable`` would leave the flag off for everyone: it has no targeting."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"flag {name!r} has no targeting, so removing its kill switch leaves it off for everyone; "
            "add targeting (rollout, add-user) or enable it for everyone (enable --all)"
        )


def default_author() -> str:
    """``user@host`` of whoever runs this process, recorded in store history."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no $USER and no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a write did: the text before and after, and the stored record."""

    name: str
    before: str | None
    after: str | None
    record: Record | None
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag": self.name,
            "changed": self.changed,
            "version": self.record.version if self.record else None,
            "before": None if self.before is None else _loads_or_text(self.before),
            "after": None if self.after is None else _loads_or_text(self.after),
        }


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What an import or copy did, by flag name."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]
    deleted: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "created": list(self.created),
            "updated": list(self.updated),
            "unchanged": list(self.unchanged),
            "deleted": list(self.deleted),
        }


class DiffKind(StrEnum):
    ADDED = "added"  # only on the right
    REMOVED = "removed"  # only on the left
    CHANGED = "changed"  # on both sides, different documents


@dataclass(frozen=True, slots=True)
class DiffEntry:
    name: str
    kind: DiffKind
    left: Any  # the decoded document, or None
    right: Any

    def to_dict(self) -> dict[str, Any]:
        return {"flag": self.name, "change": self.kind.value, "left": self.left, "right": self.right}


_NO_CHANGE: Any = object()
"""Returned by an edit function to say "leave the flag as it is"."""


class Admin:
    """Validated, compare-and-set writes to one store.

    ``author`` is recorded with every change (default: :func:`default_author`);
    ``retries`` bounds how often a read-modify-write is re-applied after losing
    a compare-and-set race before :class:`ConflictError` is raised.
    """

    def __init__(self, store: Store, *, author: str | None = None, retries: int = DEFAULT_RETRIES) -> None:
        self.store = store
        self.author = author or default_author()
        self.retries = max(1, retries)

    # -- reads -----------------------------------------------------------------

    def get(self, name: str) -> Record:
        record = self.store.get(name)
        if record is None:
            raise NotFoundError(name)
        return record

    # -- writes ----------------------------------------------------------------

    def set(self, name: str, value: Any, *, expect: int | None = None) -> Outcome:
        """Write ``value`` after validating it. ``expect`` as in :meth:`Store.put`."""
        raw = _validated(name, value)
        before = self.store.get(name)
        record = self.store.put(name, raw, expect=expect, author=self.author)
        return Outcome(name, before.raw if before else None, raw, record, before is None or before.raw != raw)

    def delete(self, name: str, *, expect: int | None = None) -> Outcome:
        before = self.get(name)
        self.store.delete(name, expect=before.version if expect is None else expect, author=self.author)
        return Outcome(name, before.raw, None, None, True)

    def update(
        self, name: str, edit: Callable[[Any], Any], *, create: bool = False, expect: int | None = None
    ) -> Outcome:
        """Read the flag, apply ``edit(document)``, validate, write with compare-and-set.

        ``edit`` receives the decoded document (``None`` if the flag does not
        exist and ``create`` is true) and returns the new document, or the
        same value to leave the flag untouched. Re-applied on conflict, unless
        ``expect`` is given: then the flag must be at that version (``0``:
        absent), else :class:`ConflictError`, and there is no retry.
        """
        conflict: ConflictError | None = None
        for attempt in range(1 if expect is not None else self.retries):
            record = self.store.get(name)
            if expect is not None and (0 if record is None else record.version) != expect:
                raise ConflictError(name, expect, None if record is None else record.version)
            if record is None and not create:
                raise NotFoundError(name)
            current = None if record is None else decode_document(record.raw)
            new = edit(current)
            raw = _validated(name, new)
            if record is not None and raw == encode_document(current):
                return Outcome(name, record.raw, record.raw, record, False)
            try:
                written = self.store.put(
                    name, raw, expect=0 if record is None else record.version, author=self.author
                )
            except ConflictError as exc:
                conflict = exc
                log.info("flag %r changed during an update (attempt %d), retrying", name, attempt + 1)
                # Jitter so that writers racing on one flag do not collide in lockstep.
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            return Outcome(name, None if record is None else record.raw, raw, written, True)
        assert conflict is not None
        raise conflict

    def disable(self, name: str, *, expect: int | None = None) -> Outcome:
        """The kill switch: off for everyone, the rest of the document kept."""
        return self.update(name, _disable, expect=expect)

    def enable(self, name: str, *, everyone: bool = False, expect: int | None = None) -> Outcome:
        """Remove the kill switch (see the module doc); ``everyone`` turns it on for all."""

        def edit(doc: Any) -> Any:
            new = _enable(doc, everyone)
            if not everyone:
                flag = parse_flag(name, new)
                off = flag.constant
                if off is not None and off.reason in (Reason.DEFAULT, Reason.OFF):
                    raise NothingToEnable(name)
            return new

        return self.update(name, edit, expect=expect)

    def rollout(self, name: str, percent: float, *, expect: int | None = None) -> Outcome:
        """Set the percentage of users the flag is on for (creating the flag if absent)."""

        def edit(doc: Any) -> Any:
            if doc is None or doc in ("on", "off") or isinstance(doc, bool | int | float):
                return _number(percent)
            if isinstance(doc, dict):
                return {**doc, "percentage": _number(percent)}
            return doc  # not a flag document; _validated refuses it

        return self.update(name, edit, create=True, expect=expect)

    def add_user(self, name: str, user: str) -> Outcome:
        """Turn the flag on for one user id (creating the flag if absent)."""

        def edit(doc: Any) -> Any:
            obj = _as_object(doc)
            users = list(obj.get("users", []))
            if user not in users:
                users.append(user)
            return {**obj, "users": users}

        return self.update(name, edit, create=True)

    def remove_user(self, name: str, user: str) -> Outcome:
        """Remove one user id from the flag's ``users`` (a no-op if absent)."""

        def edit(doc: Any) -> Any:
            if not isinstance(doc, dict) or user not in doc.get("users", []):
                return doc
            obj = dict(doc)
            obj["users"] = [u for u in obj["users"] if u != user]
            if not obj["users"]:
                del obj["users"]
            return obj

        return self.update(name, edit)

    # -- bulk ------------------------------------------------------------------

    def import_documents(
        self,
        documents: Mapping[str, Any],
        *,
        prune: bool = False,
        progress: Progress | None = None,
    ) -> CopyResult:
        """Write many documents (all validated first: one bad one writes nothing).

        Flags are written in name order. A flag whose stored document is
        already identical is not rewritten.
        ``prune`` deletes flags the store has that ``documents`` does not.
        """
        raws = validate_documents(documents)
        state = self.store.load()
        existing = state.records
        doomed = sorted(set(existing) - set(raws)) if prune else []
        total = len(raws) + len(doomed)
        created: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        for i, (name, raw) in enumerate(sorted(raws.items()), 1):
            old = existing.get(name)
            if old is not None and _same(old.raw, raw):
                unchanged.append(name)
            else:
                self._put_fresh(name, raw, old)
                (created if old is None else updated).append(name)
            if progress is not None:
                progress(i, total)
        for j, name in enumerate(doomed, len(raws) + 1):
            try:
                self.store.delete(name, expect=existing[name].version, author=self.author)
            except NotFoundError:
                log.info("flag %r was deleted meanwhile", name)
            if progress is not None:
                progress(j, total)
        return CopyResult(tuple(created), tuple(updated), tuple(unchanged), tuple(doomed))

    def _put_fresh(self, name: str, raw: str, old: Record | None) -> None:
        # Compare-and-set against what load() saw; on conflict, the import is
        # still what the operator asked for, so write over the newer version.
        try:
            self.store.put(name, raw, expect=0 if old is None else old.version, author=self.author)
        except ConflictError:
            log.warning("flag %r changed during the import; writing the imported document", name)
            self.store.put(name, raw, author=self.author)


# --------------------------------------------------------------------------- documents


def validate_documents(documents: Mapping[str, Any]) -> dict[str, str]:
    """Validate every document; canonical text by name, or one ValidationError for all."""
    raws: dict[str, str] = {}
    problems: list[Problem] = []
    for name, value in documents.items():
        try:
            raws[name] = _validated(name, value)
        except ValidationError as exc:
            problems.extend(Problem(_join(name, p.path), p.message) for p in exc.problems)
    if problems:
        raise ValidationError(problems)
    return raws


def read_documents(store: Store) -> dict[str, Any]:
    """Every document in ``store``, decoded (or raw text if undecodable), by name, sorted."""
    records = store.load().records
    return {name: _loads_or_text(records[name].raw) for name in sorted(records)}


def diff_documents(left: Mapping[str, Any], right: Mapping[str, Any]) -> list[DiffEntry]:
    """What differs between two sets of documents, by name (compared canonically)."""
    entries: list[DiffEntry] = []
    for name in sorted(set(left) | set(right)):
        if name not in right:
            entries.append(DiffEntry(name, DiffKind.REMOVED, left[name], None))
        elif name not in left:
            entries.append(DiffEntry(name, DiffKind.ADDED, None, right[name]))
        elif encode_document(left[name]) != encode_document(right[name]):
            entries.append(DiffEntry(name, DiffKind.CHANGED, left[name], right[name]))
    return entries


# --------------------------------------------------------------------------- edits


def _disable(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {**doc, "enabled": False}
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        # Keep the percentage so that enable restores it.
        return {"enabled": False, "percentage": doc}
    return "off"


def _enable(doc: Any, everyone: bool) -> Any:
    if isinstance(doc, dict):
        obj = {k: v for k, v in doc.items() if k != "enabled" or v not in (False, "off")}
        if everyone:
            obj["enabled"] = "on"
        elif set(obj) == {"percentage"}:
            return obj["percentage"]  # back to the bare number it was before disable
        return obj
    if everyone or doc in ("on", True):
        return "on"
    if doc in ("off", False):
        return "off"
    return doc


def _as_object(doc: Any) -> dict[str, Any]:
    """A document as an object, so that a selector can be added to it."""
    if isinstance(doc, dict):
        return dict(doc)
    if doc is None or doc in ("off", False):
        return {}
    if doc in ("on", True):
        return {"enabled": "on"}
    if isinstance(doc, int | float):
        return {"percentage": doc}
    return {}


def _number(percent: float) -> float | int:
    return int(percent) if float(percent).is_integer() else percent


def _validated(name: str, value: Any) -> str:
    parse_flag(name, value)
    return encode_document(value)


def _same(raw_a: str, raw_b: str) -> bool:
    if raw_a == raw_b:
        return True
    try:
        return encode_document(decode_document(raw_a)) == encode_document(decode_document(raw_b))
    except ValidationError:
        return False


def _loads_or_text(raw: str) -> Any:
    """The decoded document, or the raw text when it is not valid JSON."""
    try:
        return decode_document(raw)
    except ValidationError:
        return raw


def _join(name: str, path: str) -> str:
    return f"{name}: {path}" if path else name
