"""``flagstaff apply DIR|FILE``: make the store match a declarative flags file, in one atomic write.

::

    $ flagstaff apply flags/ --prune
    --- sqlite:///flagstaff.db
    +++ flags/
    ~ checkout: {"enabled":true,"percentage":10} -> {"enabled":true,"percentage":25}
    + segment:beta: {"users":["u1","u2"]}
    - old-banner: {"enabled":false}
    apply 3 changes to sqlite:///flagstaff.db? [y/N] y
    applied 3 changes (1 created, 1 updated, 1 deleted)

What it reads
    A FILE maps names to documents (JSON, or YAML when PyYAML is installed: the
    ``yaml`` extra), the format ``flagstaff export`` writes; segments are the
    keys ``segment:NAME``. A DIR holds such files (``*.json``, ``*.yaml``,
    ``*.yml``, not recursive) and may hold a ``segments/`` directory; a file
    holding one document (its keys are flag keys, or a bare value like
    ``"on"``) is the flag named by its stem, or under ``segments/`` the
    segment named so. A name given twice is refused.

What it does
    Every document is validated first (names, references: a flag may name a
    segment the same file brings). The differences are printed (``~``
    changed, ``+`` created, ``-`` deleted, which only ``--prune`` does); with
    ``--events DB`` each changed flag's blast radius over the last ``--days``
    follows (:func:`flagstaff.blast.blast_radius`). Then, after a confirmation
    (``--yes`` skips it; without a terminal to ask, ``--yes`` is required), the
    whole change is one :meth:`Admin.put_many <flagstaff.admin.Admin.put_many>`,
    compare-and-set on the versions read for the diff: if anything changed
    meanwhile, nothing is written and the exit code is 4 (run it again).

``--check`` (for CI) prints the same differences, writes nothing and exits 1
when the store differs from the file, 0 when it matches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flagstaff.admin import Admin, parse_document, validate_documents
from flagstaff.blast import DEFAULT_LIMIT, NoEventStore, blast_radius
from flagstaff.cli._files import is_flags_mapping, opened, read_flags_file
from flagstaff.cli._output import EXIT, Out, UsageError, compact, decoded
from flagstaff.cli._registry import Commands
from flagstaff.cli.segments import store_env
from flagstaff.document import encode_document, is_part_key, is_segment_key, segment_key, segment_name
from flagstaff.errors import ValidationError
from flagstaff.model import Flag
from flagstaff.parts import split
from flagstaff.stores.base import Record

__all__ = ["Plan", "cmd_apply", "plan", "read_declared", "register"]

_SUFFIXES = (".json", ".yaml", ".yml")


def register(command: Commands) -> None:
    """Add ``flagstaff apply`` (see the module doc)."""
    p = command("apply", cmd_apply, "make the store match a flags file or directory, in one atomic write")
    p.add_argument("path", metavar="DIR|FILE", help="flags file (name -> document) or a directory of them")
    p.add_argument("--prune", action="store_true", help="delete what the store has and the file does not")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the store differs (CI)")
    p.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    p.add_argument("--events", metavar="DB", help="show each change's blast radius from this event store")
    p.add_argument(
        "--days", type=float, default=7.0, metavar="N", help="blast radius over the last N days (7)"
    )


# --------------------------------------------------------------------------- reading


def read_declared(path: str) -> dict[str, Any]:
    """The documents a flags file or directory declares, by key (see the module doc)."""
    p = Path(path)
    if not p.is_dir():
        data = read_flags_file(path)
        return data if is_flags_mapping(data) else {p.stem: data}
    found: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    files = [(f, False) for f in sorted(p.iterdir()) if f.suffix.lower() in _SUFFIXES and f.is_file()]
    segments = p / "segments"
    if segments.is_dir():
        files += [
            (f, True) for f in sorted(segments.iterdir()) if f.suffix.lower() in _SUFFIXES and f.is_file()
        ]
    for file, in_segments in files:
        data = read_flags_file(str(file))
        if is_flags_mapping(data):
            docs = {
                segment_key(k) if in_segments and not is_segment_key(k) else k: v for k, v in data.items()
            }
        else:
            docs = {segment_key(file.stem) if in_segments else file.stem: data}
        for key, doc in docs.items():
            if key in origin:
                raise UsageError(f"{key!r} is declared twice: in {origin[key]} and in {file}")
            origin[key] = file
            found[key] = doc
    return found


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class Plan:
    """What applying would do: the documents to write, the keys to delete, and the
    versions read (the compare-and-set of the write)."""

    created: dict[str, Any]
    updated: dict[str, Any]
    deleted: tuple[str, ...]
    kept: tuple[str, ...]
    """Keys the store has and the file does not, left alone (no ``--prune``)."""
    current: Mapping[str, Record]

    @property
    def changes(self) -> int:
        return len(self.created) + len(self.updated) + len(self.deleted)

    def expect(self) -> dict[str, int]:
        names = [*self.created, *self.updated, *self.deleted]
        return {n: self.current[n].version if n in self.current else 0 for n in names}

    def to_dict(self) -> dict[str, Any]:
        def before(name: str) -> Any:
            return decoded(self.current[name].raw)

        rows: list[dict[str, Any]] = []
        rows += [{"key": n, "change": "created", "before": None, "after": d} for n, d in self.created.items()]
        rows += [
            {"key": n, "change": "updated", "before": before(n), "after": d} for n, d in self.updated.items()
        ]
        rows += [{"key": n, "change": "deleted", "before": before(n), "after": None} for n in self.deleted]
        return {"changes": sorted(rows, key=lambda r: r["key"]), "kept": list(self.kept)}


def plan(declared: Mapping[str, Any], current: Mapping[str, Record], *, prune: bool) -> Plan:
    """Compare what is declared with what the store holds (documents compared canonically)."""
    created: dict[str, Any] = {}
    updated: dict[str, Any] = {}
    for name in sorted(declared):
        doc = declared[name]
        record = current.get(name)
        if record is None:
            created[name] = doc
        elif _canonical(record.raw) != _stored_text(name, doc):
            updated[name] = doc
    # A large segment's parts (flagstaff.parts) go and come with its head: never listed alone.
    missing = tuple(sorted(k for k in set(current) - set(declared) if not is_part_key(k)))
    return Plan(created, updated, missing if prune else (), () if prune else missing, current)


def _stored_text(name: str, doc: Any) -> str:
    """The text the store holds for ``doc`` once written: a large segment's head, whose
    parts are named by their content (so equal heads mean equal members)."""
    if is_segment_key(name):
        try:
            return encode_document(split(segment_name(name), doc)[0])
        except ValidationError:
            pass  # refused when written; compared as it is meanwhile
    return encode_document(doc)


def _canonical(raw: str) -> str:
    value = decoded(raw)
    try:
        return encode_document(value)
    except (TypeError, ValueError):
        return raw


# --------------------------------------------------------------------------- the command


def cmd_apply(args: argparse.Namespace, out: Out) -> int:
    declared = read_declared(args.path)
    validate_documents(declared)  # every problem of every document, before anything else
    with opened(args.store) as store:
        state = store.load()
        todo = plan(declared, state.records, prune=args.prune)
        blasts = _blasts(args, todo, state.records, state.revision)
        if not out.json:
            _show(out, todo, args.store, args.path, blasts)
        if args.check or not todo.changes:
            _emit(out, todo, blasts, applied=False)
            if not todo.changes and not out.json:
                out.note(f"{args.store} matches {args.path}")
            return EXIT.NO if todo.changes else EXIT.OK
        if not args.yes and not _confirm(out, f"apply {todo.changes} changes to {args.store}?"):
            _emit(out, todo, blasts, applied=False)
            out.note("nothing applied")
            return EXIT.NO
        admin = Admin(store, author=args.author)
        admin.put_many({**todo.created, **todo.updated}, delete=todo.deleted, expect=todo.expect())
    _emit(out, todo, blasts, applied=True)
    if not out.json:
        out.line(
            f"applied {todo.changes} changes ({len(todo.created)} created, "
            f"{len(todo.updated)} updated, {len(todo.deleted)} deleted)"
        )
    return EXIT.OK


def _emit(out: Out, todo: Plan, blasts: Mapping[str, str], *, applied: bool) -> None:
    """The one JSON answer of ``--json`` (nothing for people: they had the diff)."""
    if out.json:
        data = {"applied": applied, **todo.to_dict()}
        if blasts:
            data["blast"] = dict(blasts)
        out.emit(data)


def _confirm(out: Out, question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("not applied: no terminal to confirm on; pass --yes to apply without asking")
    out.stderr.write(f"{question} [y/N] ")
    out.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _blasts(
    args: argparse.Namespace, todo: Plan, records: Mapping[str, Record], revision: int
) -> dict[str, str]:
    """One line per changed flag: how many recent units it would move (``--events``)."""
    events = args.events
    if events is None:
        return {}
    if not Path(events).exists():
        raise UsageError(f"no event store at {events} (give --events PATH of the SQLite events file)")
    snapshot, _ = store_env(records, revision)
    lines: dict[str, str] = {}
    for name, doc in {**todo.created, **todo.updated}.items():
        parsed = parse_document(name, doc)
        if not isinstance(parsed, Flag):
            continue  # a segment moves the flags that use it: see `blast` for each of them
        try:
            radius = blast_radius(snapshot, name, doc, events, args.days, limit=DEFAULT_LIMIT)
        except (NoEventStore, ValidationError) as exc:
            lines[name] = f"blast radius unknown: {exc}"
            continue
        lines[name] = radius.summary()
    for name in todo.deleted:
        if not is_segment_key(name):
            lines[name] = "deleted: every unit falls back to the caller's default"
    return lines


def _show(out: Out, todo: Plan, store: str, path: str, blasts: Mapping[str, str]) -> None:
    if not todo.changes:
        return
    out.line(f"--- {store}")
    out.line(f"+++ {path}")
    rows = (
        [(n, "~") for n in todo.updated] + [(n, "+") for n in todo.created] + [(n, "-") for n in todo.deleted]
    )
    for name, mark in sorted(rows):
        if mark == "~":
            before, after = compact(decoded(todo.current[name].raw)), compact(todo.updated[name])
            out.line(f"~ {name}: {before} -> {after}")
        elif mark == "+":
            out.line(f"+ {name}: {compact(todo.created[name])}")
        else:
            out.line(f"- {name}: {compact(decoded(todo.current[name].raw))}")
        if name in blasts:
            out.line(f"    {blasts[name]}")
    if todo.kept:
        out.note(f"{len(todo.kept)} in the store but not in {path}, kept (--prune deletes them)")
