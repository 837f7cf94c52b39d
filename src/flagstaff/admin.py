"""The validated write path: every change an operator makes goes through here.

The CLI and the HTTP API both write through it, so both refuse the same invalid
documents with the same messages. Each operation is a read-modify-write
guarded by compare-and-set (``expect=version``): if another writer changed the
flag in between, the store raises :class:`~flagstaff.errors.ConflictError` and
the operation is re-read and re-applied, a bounded number of times. A document
is validated with :func:`~flagstaff.model.parse_flag` *before* it is written;
nothing invalid ever reaches a store through this module.

The edits themselves (kill, enable, rollout, members, variants) are the pure
functions of :mod:`flagstaff.edits`; this module reads, applies one, validates
and writes. Every surface (the CLI, the HTTP API, the dashboard through the API,
the compatibility layers) writes through :class:`Admin`, always with the version
it read.

Segments
    A segment is a document under the key ``segment:NAME``
    (:func:`flagstaff.document.segment_key`), written, compared and versioned like a
    flag: :meth:`Admin.set` and :meth:`Admin.update` validate it with
    :func:`~flagstaff.segments.parse_segment` instead of the flag parser, and a new
    segment's NAME follows the new-flag-name rule. :meth:`Admin.flags` and
    :meth:`Admin.segments` list each kind apart.

    A segment larger than :data:`flagstaff.parts.PART_BYTES` is stored in parts
    (:mod:`flagstaff.parts`): every write of a segment validates the whole document
    (up to :data:`~flagstaff.parts.MAX_SEGMENT_BYTES`), writes the parts it needs
    (each on its own, idempotent), then the head with compare-and-set, then deletes the
    parts of that segment its stored head no longer names (best effort, logged). An edit
    (:meth:`Admin.update`) sees the segment's whole ``users`` list, as if stored in one
    document; writing a head that names parts (a rollback) needs those parts to exist.

References (checked at write time)
    A flag write is refused with a :class:`~flagstaff.errors.ValidationError` naming
    the path when it would add a reference to a segment that does not exist
    (``targeting[2].segments[0]: no segment named 'y'``), a prerequisite that is not
    a flag (``prerequisites[0]: no flag named 'x'``), a prerequisite cycle
    (``prerequisites[0]: cycle a -> b -> a``), or an experiment whose layer range
    overlaps another flag's in the same layer (the other flag named). Deleting a
    segment that flags use, or a flag others require, raises
    :class:`~flagstaff.errors.InUseError` listing them. Only what a write *adds* is
    checked: a document that already dangles (it arrived by another route, or what
    it named was deleted meanwhile: the check is not a transaction) stays readable
    and editable, and evaluation treats a missing segment as having no member and a
    missing prerequisite as failed.

Enabling a killed flag
    ``enable`` removes the kill (:func:`flagstaff.edits.enable`). When the flag's
    current version is the kill itself (its newest history entry turned the
    previous document into this one), ``enable`` writes that previous document
    back exactly (``"on"`` stays ``"on"``, ``"enabled": "on"`` is kept). If what
    is left has no targeting at all (it would still be off for everyone, e.g. a
    flag that was ``"off"``), it is refused with :class:`NothingToEnable` rather
    than guessing; pass ``everyone=True`` (``flagstaff enable --all``) to turn the
    flag on for everyone.
"""

from __future__ import annotations

import getpass
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flagstaff import edits
from flagstaff.decision import Reason
from flagstaff.document import is_part_key, is_segment_key, part_key, part_owner, segment_key, segment_name
from flagstaff.errors import (
    ConflictError,
    FlagstaffError,
    InUseError,
    NotFoundError,
    Problem,
    ValidationError,
)
from flagstaff.model import (
    Flag,
    check_new_name,
    decode_document,
    encode_document,
    parse_flag,
    parse_text,
    printable_text,
    references,
)
from flagstaff.parts import MAX_SEGMENT_BYTES, PARTS_KEY, Lookup, expand, split
from flagstaff.segments import Segment, parse_segment
from flagstaff.stores.base import Record, Store, Write

__all__ = [
    "COMMENT_MARK",
    "MAX_COMMENT",
    "Admin",
    "CopyResult",
    "DiffEntry",
    "DiffKind",
    "NothingToEnable",
    "Outcome",
    "default_author",
    "diff_documents",
    "parse_document",
    "read_documents",
    "validate_documents",
    "with_comment",
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


COMMENT_MARK = " # "
"""Between the author and the comment in a history entry's author text (``alice # why``):
history has one text field for who, so the comment rides in it, and
:func:`flagstaff.http.present.parse_author` splits it off again."""
MAX_COMMENT = 500


def with_comment(author: str, comment: str | None) -> str:
    """``author`` with ``comment`` (why the change was made) recorded after it, for history.

    A comment is one line of at most :data:`MAX_COMMENT` characters (line breaks become
    spaces; blank means none); a longer one is refused with a :class:`ValidationError`."""
    text = " ".join((comment or "").split())
    if not text:
        return author
    if len(text) > MAX_COMMENT:
        message = f"must be at most {MAX_COMMENT} characters, not {len(text)}"
        raise ValidationError([Problem("comment", message)])
    return f"{author}{COMMENT_MARK}{printable_text(text, newlines=False)}"


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
        """The stored record of a flag, or of a segment by its key ``segment:NAME``."""
        record = self.store.get(name)
        if record is None:
            raise _not_found(name)
        return record

    def flags(self) -> dict[str, Record]:
        """Every flag's record by name, sorted (segments left out)."""
        records = self.store.load().records
        return {k: records[k] for k in sorted(records) if not is_segment_key(k)}

    def segments(self) -> dict[str, Record]:
        """Every segment's record by segment name (without the ``segment:`` prefix), sorted;
        a segment stored in parts by its head (the parts are left out)."""
        records = self.store.load().records
        return {
            segment_name(k): records[k] for k in sorted(records) if is_segment_key(k) and not is_part_key(k)
        }

    def _lookup(self) -> Lookup:
        """Reads a part's text from the store (for a segment stored in parts)."""

        def lookup(key: str) -> str | None:
            record = self.store.get(key)
            return None if record is None else record.raw

        return lookup

    def _write_parts(self, parts: Mapping[str, str]) -> None:
        """Store the parts a segment head is about to name: each on its own, before the
        head; a part already stored with the same text is left as it is."""
        for key, raw in parts.items():
            old = self.store.get(key)
            if old is not None and _same(old.raw, raw):
                continue
            try:
                self.store.put(key, raw, expect=0 if old is None else old.version, author=self.author)
            except ConflictError:  # written meanwhile: by the same content unless someone tampers
                now = self.store.get(key)
                if now is None or not _same(now.raw, raw):
                    self.store.put(key, raw, author=self.author)

    def _collect_parts(self, name: str, mine: Mapping[str, str] | None = None) -> list[str]:
        """Delete the parts of segment ``name`` that its stored head does not name; when that
        head is the one just written (its parts ``mine``), put back any of them another
        writer's collection deleted meanwhile. Best effort: returns the parts left over."""
        if not is_segment_key(name):
            return []
        bare = segment_name(name)
        try:
            records = self.store.load().records
            head = records.get(name)
            value = _decoded(head.raw) if head is not None else None
            listed = value.get(PARTS_KEY) if isinstance(value, dict) else None
            digests = listed if isinstance(listed, list) else []
            keep = {part_key(bare, d) for d in digests if isinstance(d, str)}
            for key, raw in (mine or {}).items():
                if key in keep and key not in records:
                    self.store.put(key, raw, author=self.author)
            doomed = sorted(k for k in records if is_part_key(k) and part_owner(k) == bare and k not in keep)
        except FlagstaffError as exc:
            log.warning("segment %r: cannot look for parts it no longer uses: %s", bare, exc)
            return []
        left: list[str] = []
        for key in doomed:
            try:
                self.store.delete(key, expect=records[key].version, author=self.author)
            except NotFoundError:
                pass  # collected by another writer
            except FlagstaffError as exc:
                left.append(key)
                log.warning("segment %r: cannot delete the unused part %r (harmless): %s", bare, key, exc)
        return left

    # -- writes ----------------------------------------------------------------

    def set(self, name: str, value: Any, *, expect: int | None = None) -> Outcome:
        """Write ``value`` after validating it. ``expect`` as in :meth:`Store.put`."""
        prepared = _prepare(name, value, self._lookup())
        parsed, value, raw = prepared.parsed, prepared.value, prepared.raw
        before = self.store.get(name)
        # Compare before writing: the same document again is not a change, so it must not bump
        # the version or add a history entry (watchers would see a write that changed nothing).
        # With ``expect`` the version must still match, so a stale expectation stays a conflict.
        if before is not None and _same(before.raw, raw) and expect in (None, before.version):
            self._write_parts(prepared.parts)  # the same head: put back any part lost meanwhile
            return Outcome(name, before.raw, before.raw, before, False)
        world = _World(self.store)
        if before is None:  # a new flag: the stricter name rule and no look-alike (docs/flags.md)
            _check_new_name(name, world.keys())
        _check_references(name, value, parsed, None if before is None else before.raw, world)
        self._write_parts(prepared.parts)  # before the head: a reader never sees a head without them
        record = self.store.put(name, raw, expect=expect, author=self.author)
        self._collect_parts(name, prepared.parts)
        return Outcome(name, before.raw if before else None, raw, record, True)

    def delete(self, name: str, *, expect: int | None = None, force: bool = False) -> Outcome:
        """Delete a flag, or a segment by its key ``segment:NAME``.

        Refused with :class:`InUseError` while flags still use the segment, or require
        the flag as a prerequisite, unless ``force`` (they then dangle: a missing
        segment has no member, a missing prerequisite fails).
        """
        if is_part_key(name):
            message = (
                f"{name!r} is a part of the segment {part_owner(name)!r}: delete or rewrite the segment, "
                "flagstaff deletes the parts it no longer uses"
            )
            raise ValidationError([Problem("name", message)], flag=name)
        before = self.get(name)
        if not force:
            _check_unused(name, self.store.load().records)
        self.store.delete(name, expect=before.version if expect is None else expect, author=self.author)
        self._collect_parts(name)
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
                raise _not_found(name)
            world = _World(self.store)
            if record is None:  # a new flag: the stricter name rule and no look-alike (docs/flags.md)
                _check_new_name(name, world.keys())
            current = None if record is None else decode_document(record.raw)
            lookup = self._lookup()
            if current is not None and is_segment_key(name):
                current = expand(name, current, lookup)  # an edit sees all of a segment's users
            prepared = _prepare(name, edit(current), lookup)
            new, parsed, raw = prepared.value, prepared.parsed, prepared.raw
            if record is not None and raw == encode_document(decode_document(record.raw)):
                return Outcome(name, record.raw, record.raw, record, False)
            _check_references(name, new, parsed, None if record is None else record.raw, world)
            self._write_parts(prepared.parts)
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
            self._collect_parts(name, prepared.parts)
            return Outcome(name, None if record is None else record.raw, raw, written, True)
        assert conflict is not None
        raise conflict

    def archive(self, name: str, *, expect: int | None = None) -> Outcome:
        """Retire a flag: ``"archived": true``, so it evaluates off for everyone (reason
        ``archived``), the rest of the document and the history kept for :meth:`restore`.
        Archiving an archived flag changes nothing."""
        return self.update(name, _archived, expect=expect)

    def restore(self, name: str, *, expect: int | None = None) -> Outcome:
        """Bring an archived flag back: its document as it was, without ``archived``.
        Restoring a flag that is not archived changes nothing."""
        return self.update(name, _restored, expect=expect)

    def disable(self, name: str, *, expect: int | None = None) -> Outcome:
        """The kill switch: off for everyone, the rest of the document kept."""
        return self.update(name, edits.kill, expect=expect)

    def enable(self, name: str, *, everyone: bool = False, expect: int | None = None) -> Outcome:
        """Remove the kill switch (see the module doc); ``everyone`` turns it on for all."""

        restore = None if everyone else self._before_kill(name)

        def edit(doc: Any) -> Any:
            if restore is not None and encode_document(doc) == restore[1]:
                return restore[0]  # the document exactly as it was before the kill
            new = edits.enable(doc, everyone=everyone)
            if not everyone:
                flag = parse_flag(name, new)
                off = flag.constant
                if off is not None and off.reason in (Reason.DEFAULT, Reason.OFF):
                    raise NothingToEnable(name)
            return new

        return self.update(name, edit, expect=expect)

    def _before_kill(self, name: str) -> tuple[Any, str] | None:
        """``(document before the kill, encoded killed document)`` when the flag's
        current version was written by :meth:`disable`, else ``None``."""
        record = self.store.get(name)
        if record is None:
            return None
        entries = self.store.history(name, limit=1)
        if not entries or entries[0].version != record.version:
            return None
        entry = entries[0]
        if entry.before is None or entry.after is None:
            return None
        try:
            before = decode_document(entry.before)
            current = encode_document(decode_document(record.raw))
        except ValidationError:
            return None
        killed = encode_document(edits.kill(before))
        if killed == encode_document(before) or killed != current:
            return None  # the last change was not a kill of a live document
        return before, current

    def rollout(
        self, name: str, percent: float, *, expect: int | None = None, create: bool = False
    ) -> Outcome:
        """Set the percentage of users the flag is on for.

        A missing flag is :class:`NotFoundError` unless ``create``: a typo in the
        name must not silently start a new flag at that percentage.
        """

        return self.update(name, lambda doc: edits.set_percentage(doc, percent), create=create, expect=expect)

    def add_members(
        self, name: str, key: str, items: Iterable[str], *, create: bool = False, expect: int | None = None
    ) -> Outcome:
        """Add ``items`` to the flag's ``key`` list (``"users"``, ``"groups"``); a missing
        flag is :class:`NotFoundError` unless ``create``."""
        wanted = list(items)
        return self.update(
            name, lambda doc: edits.add_members(doc, key, wanted), create=create, expect=expect
        )

    def remove_members(
        self, name: str, key: str, items: Iterable[str], *, expect: int | None = None
    ) -> Outcome:
        """Remove ``items`` from the flag's ``key`` list (those it does not hold are ignored)."""
        gone = list(items)
        return self.update(name, lambda doc: edits.remove_members(doc, key, gone), expect=expect)

    def add_user(self, name: str, user: str, *, create: bool = False) -> Outcome:
        """Turn the flag on for one user id (a missing flag: NotFoundError unless ``create``)."""
        return self.add_members(name, "users", [user], create=create)

    def remove_user(self, name: str, user: str) -> Outcome:
        """Remove one user id from the flag's ``users`` (a no-op if absent)."""
        return self.remove_members(name, "users", [user])

    def set_variants(self, name: str, variants: Mapping[str, Any], *, expect: int | None = None) -> Outcome:
        """Set the experiment's variants (name -> percentage)."""
        return self.update(name, lambda doc: edits.set_variants(doc, variants), expect=expect)

    # -- bulk ------------------------------------------------------------------

    def put_many(
        self,
        documents: Mapping[str, Any],
        *,
        delete: Iterable[str] = (),
        expect: Mapping[str, int] | None = None,
        force: bool = False,
    ) -> list[Outcome]:
        """Write ``documents`` and delete the keys in ``delete`` as one atomic write
        (:meth:`Store.put_many <flagstaff.stores.base.Store.put_many>`): all of it or none.

        Every document is validated first (as :meth:`set` does, new names and references
        included, checked against the store as this write leaves it: a flag may name a
        segment that comes in the same write), and deleting what a kept flag still names is
        refused unless ``force``; one :class:`ValidationError` lists every problem, and
        nothing is written. Each write is compare-and-set on ``expect[name]`` when given
        (``0``: must not exist), else on the version read here, so a change made meanwhile
        raises :class:`ConflictError` and nothing is written. A document identical to the
        stored one is not rewritten (its outcome says ``changed=False``). Returns one
        outcome per document, then one per deletion.
        """
        doomed = sorted(set(delete))
        both = sorted(set(doomed) & set(documents))
        if both:
            raise ValidationError([Problem(n, "both written and deleted in one put_many") for n in both])
        lookup = self._lookup()
        prepared = _prepare_all(documents, lookup)
        raws = {name: p.raw for name, p in prepared.items()}
        documents = {name: p.value for name, p in prepared.items()}
        existing = self.store.load().records
        problems: list[Problem] = []
        for name in doomed:
            if name not in existing:
                problems.append(Problem(name, "cannot delete it: " + str(_not_found(name))))
        new_names = [n for n in sorted(raws) if n not in existing]
        for i, name in enumerate(new_names):
            # Look-alikes count among the existing keys and the other new ones before it.
            try:
                _check_new_name(name, [*existing, *new_names[:i]])
            except ValidationError as exc:
                problems.extend(Problem(_join(name, p.path), p.message) for p in exc.problems)
        try:
            _check_import(documents, raws, existing, doomed if not force else [])
        except ValidationError as exc:
            problems.extend(exc.problems)
        if problems:
            raise ValidationError(problems)
        expect = dict(expect or {})
        writes: list[Write] = []
        outcomes: list[Outcome] = []
        for name, raw in raws.items():
            old = existing.get(name)
            version = 0 if old is None else old.version
            if old is not None and _same(old.raw, raw) and expect.get(name, version) == version:
                outcomes.append(Outcome(name, old.raw, old.raw, old, False))
                continue
            writes.append(Write(name, raw, expect.get(name, version)))
            outcomes.append(Outcome(name, None if old is None else old.raw, raw, None, True))
        for name in doomed:
            writes.append(Write(name, None, expect.get(name, existing[name].version)))
            outcomes.append(Outcome(name, existing[name].raw, None, None, True))
        for p in prepared.values():
            self._write_parts(p.parts)
        records = iter(self.store.put_many(writes, author=self.author) if writes else [])
        for w in writes:
            if is_segment_key(w.name):
                self._collect_parts(w.name, prepared[w.name].parts if w.name in prepared else None)
        return [Outcome(o.name, o.before, o.after, next(records), True) if o.changed else o for o in outcomes]

    def import_documents(
        self,
        documents: Mapping[str, Any],
        *,
        prune: bool = False,
        progress: Progress | None = None,
    ) -> CopyResult:
        """Write many documents (all validated first: one bad one writes nothing).

        Flags and segments (``segment:NAME``) are written in name order. A document
        whose stored one is already identical is not rewritten.
        ``prune`` deletes documents the store has that ``documents`` does not.
        References are checked against the store as the import leaves it: a flag may
        name a segment or prerequisite that comes in the same import.
        """
        prepared = _prepare_all(documents, self._lookup())
        raws = {name: p.raw for name, p in prepared.items()}
        documents = {name: p.value for name, p in prepared.items()}
        state = self.store.load()
        existing = state.records
        # A segment's parts go and come with it: never pruned on their own.
        doomed = sorted(k for k in set(existing) - set(raws) if not is_part_key(k)) if prune else []
        _check_import(documents, raws, existing, doomed)
        total = len(raws) + len(doomed)
        created: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        for i, (name, raw) in enumerate(sorted(raws.items()), 1):
            old = existing.get(name)
            if old is not None and _same(old.raw, raw):
                unchanged.append(name)
            else:
                self._write_parts(prepared[name].parts)
                self._put_fresh(name, raw, old)
                self._collect_parts(name, prepared[name].parts)
                (created if old is None else updated).append(name)
            if progress is not None:
                progress(i, total)
        for j, name in enumerate(doomed, len(raws) + 1):
            try:
                self.store.delete(name, expect=existing[name].version, author=self.author)
            except NotFoundError:
                log.info("flag %r was deleted meanwhile", name)
            self._collect_parts(name)
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


def _archived(doc: Any) -> Any:
    if isinstance(doc, dict) and doc.get("archived") is True:
        return doc
    if doc is False or doc == "off":  # as_object would drop the kill: keep it for restore
        return {"enabled": "off", "archived": True}
    return {**edits.as_object(doc), "archived": True}


def _restored(doc: Any) -> Any:
    if not isinstance(doc, dict) or "archived" not in doc:
        return doc
    return {k: v for k, v in doc.items() if k != "archived"}


def validate_documents(documents: Mapping[str, Any], parts: Lookup | None = None) -> dict[str, str]:
    """Validate every document; the canonical text to store by name (a large segment's
    head, :mod:`flagstaff.parts`), or one ValidationError for all. A segment head naming
    parts is read with them, through ``parts``."""
    return {name: p.raw for name, p in _prepare_all(documents, parts or _no_parts).items()}


def _no_parts(key: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A document validated for writing: the parse, the whole document (a segment's users
    joined), the text stored under its name (a segment's head) and the parts to store first."""

    parsed: Flag | Segment
    value: Any
    raw: str
    parts: Mapping[str, str]


def _prepare(name: str, value: Any, lookup: Lookup) -> _Prepared:
    if is_part_key(name):
        message = (
            f"{name!r} is a part of the segment {part_owner(name)!r}, stored in parts: "
            "write the segment, flagstaff writes its parts"
        )
        raise ValidationError([Problem("name", message)], flag=name)
    if not is_segment_key(name):
        return _Prepared(parse_flag(name, value), value, encode_document(value), {})
    whole = expand(name, value, lookup)
    parsed = parse_segment(name, whole, limit=MAX_SEGMENT_BYTES)
    head, parts = split(segment_name(name), whole)
    return _Prepared(parsed, whole, encode_document(head), parts)


def _prepare_all(documents: Mapping[str, Any], lookup: Lookup) -> dict[str, _Prepared]:
    out: dict[str, _Prepared] = {}
    problems: list[Problem] = []
    for name, value in documents.items():
        try:
            out[name] = _prepare(name, value, lookup)
        except ValidationError as exc:
            problems.extend(Problem(_join(name, p.path), p.message) for p in exc.problems)
    if problems:
        raise ValidationError(problems)
    return out


def read_documents(store: Store) -> dict[str, Any]:
    """Every document in ``store``, decoded (or raw text if undecodable), by name, sorted.
    A segment stored in parts is read whole (its ``users`` joined from its parts, which
    are left out); one whose parts cannot be read is given as stored."""
    records = store.load().records
    texts = {name: record.raw for name, record in records.items()}
    out: dict[str, Any] = {}
    for name in sorted(records):
        if is_part_key(name):
            continue
        value = _loads_or_text(records[name].raw)
        if is_segment_key(name):
            try:
                value = expand(name, value, texts)
            except ValidationError as exc:
                log.warning("segment %r: %s; reading its head as stored", segment_name(name), exc)
        out[name] = value
    return out


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


def parse_document(name: str, value: Any) -> Flag | Segment:
    """The document stored under ``name`` validated: a :class:`~flagstaff.segments.Segment`
    for a segment key (``segment:NAME``), else a :class:`~flagstaff.model.Flag`.
    A segment may be as large as a segment stored in parts may be
    (:data:`~flagstaff.parts.MAX_SEGMENT_BYTES`). Raises :class:`ValidationError`."""
    if is_segment_key(name):
        return parse_segment(name, value, limit=MAX_SEGMENT_BYTES)
    return parse_flag(name, value)


def _not_found(name: str) -> NotFoundError:
    exc = NotFoundError(name)
    if is_segment_key(name):
        exc.args = (f"no segment named {segment_name(name)!r}",)
    return exc


def _check_new_name(name: str, existing: Iterable[str]) -> None:
    """The new-name rule for a flag, or for a segment's NAME (look-alikes within its kind)."""
    if not is_segment_key(name):
        check_new_name(name, (k for k in existing if not is_segment_key(k)))
        return
    try:
        check_new_name(segment_name(name), (segment_name(k) for k in existing if is_segment_key(k)))
    except ValidationError as exc:
        problems = [
            Problem(
                p.path,
                p.message.replace("flag name", "segment name").replace("existing flag", "existing segment"),
            )
            for p in exc.problems
        ]
        raise ValidationError(problems, flag=name) from None


# --------------------------------------------------------------------------- references


class _World:
    """The store's documents, read once (lazily: a write that names nothing and creates
    nothing never loads the store), as raw text by key."""

    def __init__(self, store: Store | None = None, raws: Mapping[str, str] | None = None) -> None:
        self._store = store
        self._raws = raws
        self._requires: dict[str, tuple[str, ...]] = {}

    @property
    def raws(self) -> Mapping[str, str]:
        if self._raws is None:
            assert self._store is not None
            self._raws = {k: r.raw for k, r in self._store.load().records.items()}
        return self._raws

    def keys(self) -> Iterable[str]:
        return self.raws.keys()

    def requires(self, name: str) -> tuple[str, ...]:
        """The prerequisites of the stored flag ``name`` (its parse's, else its document's)."""
        if name not in self._requires:
            raw = self.raws.get(name)
            found: tuple[str, ...] = ()
            if raw is not None and not is_segment_key(name):
                try:
                    found = parse_text(name, raw).requires
                except ValidationError:  # a bad document still says what it meant
                    found = tuple(t for _, t in _prerequisites(_decoded(raw)))
            self._requires[name] = found
        return self._requires[name]


def _decoded(raw: str) -> Any:
    try:
        return decode_document(raw)
    except ValidationError:
        return None


def _prerequisites(doc: Any) -> list[tuple[str, str]]:
    """``(path, flag name)`` of each prerequisite a flag document names."""
    if not isinstance(doc, dict) or not isinstance(doc.get("prerequisites"), list):
        return []
    found = []
    for i, item in enumerate(doc["prerequisites"]):
        target = item.get("flag") if isinstance(item, dict) else item
        if isinstance(target, str):
            found.append((f"prerequisites[{i}]", target))
    return found


# Keys whose list names segments, wherever they appear in a flag document (targeting rules,
# deny), except under "values": those are the user's own JSON, not references.
_SEGMENT_LISTS = ("segments", "not_segments")


def _segment_refs(doc: Any, path: str = "") -> list[tuple[str, str]]:
    """``(path, segment name)`` of each segment a flag document names."""
    found: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for key, item in doc.items():
            if not path and key == "values":
                continue
            here = f"{path}.{key}" if path else str(key)
            if key in _SEGMENT_LISTS and isinstance(item, list):
                found += [(f"{here}[{i}]", segment_name(s)) for i, s in enumerate(item) if isinstance(s, str)]
            else:
                found += _segment_refs(item, here)
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            found += _segment_refs(item, f"{path}[{i}]")
    return found


# The top-level keys under which a flag document can name another document (or a layer).
_REFERRING = frozenset({"prerequisites", "targeting", "deny", "experiment"})


def _layer(doc: Any) -> tuple[str, float, float] | None:
    """``(layer name, start, end)`` of a flag document's experiment layer, if well formed."""
    exp = doc.get("experiment") if isinstance(doc, dict) else None
    layer = exp.get("layer") if isinstance(exp, dict) else None
    if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
        return None
    bounds = layer.get("range")
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
    ):
        return None
    return layer["name"], float(bounds[0]), float(bounds[1])


def _check_references(
    name: str, value: Any, parsed: Flag | Segment, before: str | None, world: _World
) -> None:
    """Refuse a flag write that adds a missing segment or prerequisite, a prerequisite
    cycle, or an overlapping experiment layer (see the module doc)."""
    if not isinstance(parsed, Flag):
        return  # a segment names nothing
    old = _decoded(before) if before is not None else None
    old_segments = {s for _, s in _segment_refs(old)}
    old_requires = {t for _, t in _prerequisites(old)}
    # What the flag names, with where: the parser's word (model.references). The document
    # walks (_segment_refs, _prerequisites) are for stored documents, which may not parse.
    named = references(parsed)
    segments = [(r.path, r.name) for r in named if r.kind == "segment"]
    requires = [(r.path, r.name) for r in named if r.kind == "flag"]
    new_segments = [(p, s) for p, s in segments if s not in old_segments]
    new_requires = [(p, t) for p, t in requires if t not in old_requires]
    layer = _layer(value)
    if not new_segments and not new_requires and layer is None:
        return  # names nothing new: no need to read the store
    raws = world.raws
    problems: list[Problem] = []
    for path, seg in new_segments:
        if segment_key(seg) not in raws:
            problems.append(Problem(path, f"no segment named {seg!r}"))
    for path, target in new_requires:
        if target not in raws or is_segment_key(target):
            problems.append(Problem(path, f"no flag named {target!r}"))
            continue
        chain = _cycle(name, target, world)
        if chain is not None:
            problems.append(Problem(path, "cycle " + " -> ".join(chain)))
    if layer is not None:
        problems += _layer_problems(name, layer, _layer(old), raws)
    if problems:
        raise ValidationError(problems, flag=name)


def _cycle(name: str, first: str, world: _World) -> list[str] | None:
    """The chain ``name -> first -> ... -> name`` when ``first`` (transitively) requires
    ``name``, else None. Depth first over the stored flags' prerequisites."""
    seen: set[str] = set()
    stack: list[tuple[str, list[str]]] = [(first, [name, first])]
    while stack:
        node, chain = stack.pop()
        if node == name:
            return chain
        if node in seen:
            continue
        seen.add(node)
        for nxt in reversed(world.requires(node)):
            stack.append((nxt, [*chain, nxt]))
    return None


def _layer_problems(
    name: str, layer: tuple[str, float, float], old: tuple[str, float, float] | None, raws: Mapping[str, str]
) -> list[Problem]:
    lname, start, end = layer
    problems = []
    for other in sorted(raws):
        raw = raws[other]
        if other == name or is_segment_key(other) or "layer" not in raw:
            continue
        theirs = _layer(_decoded(raw))
        if theirs is None or theirs[0] != lname or not (start < theirs[2] and theirs[1] < end):
            continue
        if old is not None and old[0] == lname and old[1] < theirs[2] and theirs[1] < old[2]:
            continue  # the overlap was already stored: not added by this write
        problems.append(
            Problem(
                "experiment.layer.range",
                f"[{start:g}, {end:g}) overlaps flag {other!r} (range [{theirs[1]:g}, {theirs[2]:g})) "
                f"in layer {lname!r}: experiments in one layer must not share users",
            )
        )
    return problems


def _users_of(name: str, raws: Mapping[str, str]) -> list[str]:
    """The flags that name ``name``: use the segment (a segment key) or require the flag."""
    users = []
    target = segment_name(name) if is_segment_key(name) else name
    for key in sorted(raws):
        if key == name or is_segment_key(key):
            continue
        doc = _decoded(raws[key])
        refs = _segment_refs(doc) if is_segment_key(name) else _prerequisites(doc)
        if any(t == target for _, t in refs):
            users.append(key)
    return users


def _check_unused(name: str, records: Mapping[str, Record]) -> None:
    users = _users_of(name, {k: r.raw for k, r in records.items()})
    if not users:
        return
    if is_segment_key(name):
        raise InUseError(segment_name(name), users, what="segment", how="used")
    raise InUseError(name, users, what="flag", how="required (prerequisites)")


def _check_import(
    documents: Mapping[str, Any],
    raws: Mapping[str, str],
    existing: Mapping[str, Record],
    doomed: Iterable[str],
) -> None:
    """Check each imported flag's references against the store as the import leaves it."""
    after = {k: r.raw for k, r in existing.items()}
    for key in doomed:
        after.pop(key, None)
    after.update(raws)
    world = _World(raws=after)
    problems: list[Problem] = []
    for name, value in documents.items():
        if is_segment_key(name) or not isinstance(value, dict) or not _REFERRING & value.keys():
            continue  # a segment names nothing; nor does a flag without these keys
        old = existing.get(name)
        try:
            _check_references(name, value, parse_flag(name, value), None if old is None else old.raw, world)
        except ValidationError as exc:
            problems.extend(Problem(_join(name, p.path), p.message) for p in exc.problems)
    # A pruned segment or flag may still be named by a flag the import keeps or writes.
    for key in doomed:
        users = _users_of(key, after)
        if users:
            listed = ", ".join(repr(u) for u in users)
            problems.append(Problem(key, f"--prune would delete it, but {listed} still name it"))
    if problems:
        raise ValidationError(problems)


def _same(raw_a: str, raw_b: str) -> bool:
    if raw_a == raw_b:
        return True
    try:
        return encode_document(decode_document(raw_a)) == encode_document(decode_document(raw_b))
    except ValidationError:
        return False


def _loads_or_text(raw: str) -> Any:
    """The decoded document, or the raw text (made printable) when it is not valid JSON."""
    try:
        return decode_document(raw)
    except ValidationError:
        return printable_text(raw)  # bytes that were not UTF-8 cannot be printed or sent as they are


def _join(name: str, path: str) -> str:
    return f"{name}: {path}" if path else name
