"""``flagstaff segment list|get|set|delete``: the segments of one store, and linking for ``check``.

A segment is a document under the key ``segment:NAME`` in the same store as the
flags (:mod:`flagstaff.segments`), so it is written like a flag: through
:class:`flagstaff.admin.Admin` (validated, compare-and-set, history), and
exported, imported, diffed and watched with them. ``segment set NAME`` takes the
document as a JSON argument, ``@FILE``, ``-f FILE`` or on stdin; ``segment
delete NAME`` is refused (exit 1) while flags use it, listing them, unless
``--force``.

:func:`store_env` builds the :class:`~flagstaff.snapshot.Snapshot` of a store's
records, each flag linked to the segments, prerequisites and holdouts it names,
so ``flagstaff check`` answers as a client following that store would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from flagstaff.admin import Admin
from flagstaff.cli._files import opened, read_flags_file
from flagstaff.cli._output import EXIT, Out, UsageError, decoded
from flagstaff.cli._registry import Commands
from flagstaff.document import decode_document, is_part_key, is_segment_key, segment_key, segment_name
from flagstaff.errors import ValidationError
from flagstaff.model import Flag, parse_text, printable_text
from flagstaff.parts import PARTS_KEY, Lookup
from flagstaff.segments import Segment, parse_segment_text
from flagstaff.snapshot import Snapshot
from flagstaff.stores.base import Record

__all__ = ["cmd_segment", "compile_record", "register", "segment_summary", "store_env"]

ACTIONS = ("list", "get", "set", "delete")


def register(commands: Commands) -> None:
    """Add ``flagstaff segment`` (see the module doc)."""
    p = commands(
        "segment",
        cmd_segment,
        "segments: list | get NAME | set NAME [DOCUMENT | -f FILE | stdin] | delete NAME",
    )
    p.add_argument("action", choices=ACTIONS, help="what to do")
    p.add_argument("name", nargs="?", metavar="NAME", help="the segment (without 'segment:')")
    p.add_argument("document", nargs="?", metavar="DOCUMENT", help="set: JSON, or @FILE")
    p.add_argument("-f", "--file", metavar="FILE", help="set: read the document from FILE ('-': stdin)")
    p.add_argument("--expect", type=int, metavar="VERSION", help="set/delete: only if at VERSION (0: new)")
    p.add_argument("--force", action="store_true", help="delete: even while flags use it (they then dangle)")


def cmd_segment(args: argparse.Namespace, out: Out) -> int:
    if args.action == "list":
        if args.name is not None:
            raise UsageError("segment list takes no NAME")
        return _list(args, out)
    if not args.name:
        raise UsageError(f"segment {args.action} needs a NAME")
    if args.action != "set" and (args.document is not None or args.file is not None):
        raise UsageError(f"segment {args.action} takes no document")
    key = segment_key(args.name)
    if args.action == "get":
        return _get(args, out, key)
    if args.action == "set":
        value = _document(args)
        return _write(args, out, key, "set", lambda a: a.set(key, value, expect=args.expect))
    return _write(args, out, key, "deleted", lambda a: a.delete(key, expect=args.expect, force=args.force))


def _document(args: argparse.Namespace) -> Any:
    if args.document is not None and args.file is not None:
        raise UsageError("give the document as an argument or with -f FILE, not both")
    if args.file is not None:
        return read_flags_file(args.file)
    if args.document is not None:
        if args.document.startswith("@"):
            return read_flags_file(args.document[1:])
        return decode_document(args.document)
    if sys.stdin.isatty():
        raise UsageError("segment set needs a DOCUMENT, -f FILE, or the document on stdin")
    return read_flags_file("-")


def _write(args: argparse.Namespace, out: Out, key: str, verb: str, action: Any) -> int:
    with opened(args.store) as store:
        outcome = action(Admin(store, author=args.author))
    name = segment_name(key)
    if out.json:
        data = outcome.to_dict()
        data.pop("flag", None)
        out.emit({"segment": name, **data})
    elif not outcome.changed:
        out.line(f"segment {name}: unchanged")
    else:
        version = outcome.record.version if outcome.record else None
        out.line(f"segment {name}: {verb}" + (f" (version {version})" if version is not None else ""))
        if outcome.after is not None:
            out.line(f"  {outcome.after}")
    return EXIT.OK


def _get(args: argparse.Namespace, out: Out, key: str) -> int:
    with opened(args.store) as store:
        rec = Admin(store).get(key)
        records = store.load().records if PARTS_KEY in rec.raw else {}
    name = segment_name(key)
    doc = decoded(rec.raw)
    problem: ValidationError | None = None
    try:
        parse_segment_text(key, rec.raw, parts=_part_texts(records.get))
    except ValidationError as exc:
        problem = exc
    if out.json:
        data: dict[str, Any] = {"segment": name, "version": rec.version, "document": doc}
        data["used_by"] = _used_by(args.store, name)
        if problem is not None:
            data["problems"] = [
                {"path": p.path, "message": printable_text(p.message)} for p in problem.problems
            ]
        out.emit(data)
    else:
        out.line(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True))
    if problem is not None:
        out.note(
            f"flagstaff: segment {name!r} (version {rec.version}) holds a bad document, which clients "
            f"skip: {printable_text(str(problem), newlines=False)}"
        )
        return EXIT.NO
    return EXIT.OK


def _used_by(url: str, name: str) -> list[str]:
    with opened(url) as store:
        records = store.load().records
    users = []
    for key in sorted(records):
        if is_segment_key(key):
            continue
        flag = compile_record(key, records[key].raw, records)
        if isinstance(flag, Flag) and name in flag.segments:
            users.append(key)
    return users


def _list(args: argparse.Namespace, out: Out) -> int:
    with opened(args.store) as store:
        state = store.load()
    rows = segment_rows(state.records)
    if out.json:
        out.emit({"revision": state.revision, "segments": rows})
    elif not rows:
        out.note(f"no segments in {args.store}")
    else:
        print_segment_rows(out, rows)
    return EXIT.OK


def segment_rows(records: Mapping[str, Record]) -> list[dict[str, Any]]:
    """One row per segment: name, version, summary, users (the flags naming it), description."""
    users: dict[str, list[str]] = {}
    for key in sorted(records):
        if not is_segment_key(key):
            flag = compile_record(key, records[key].raw)
            if isinstance(flag, Flag):
                for seg in flag.segments:
                    users.setdefault(seg, []).append(key)
    rows = []
    for key in sorted(k for k in records if is_segment_key(k) and not is_part_key(k)):
        rec = records[key]
        name = segment_name(key)
        compiled = compile_record(key, rec.raw, records)
        if isinstance(compiled, Segment):
            summary, desc = segment_summary(decoded(rec.raw), compiled), compiled.description
        else:
            summary, desc = "INVALID", printable_text(str(compiled), newlines=False)
        rows.append(
            {
                "segment": name,
                "version": rec.version,
                "summary": summary,
                "used_by": users.get(name, []),
                "description": desc,
                "document": decoded(rec.raw),
            }
        )
    return rows


def print_segment_rows(out: Out, rows: list[dict[str, Any]]) -> None:
    out.table(
        ["segment", "version", "members", "used by", "description"],
        [
            [r["segment"], r["version"], r["summary"], ", ".join(r["used_by"]) or None, r["description"]]
            for r in rows
        ],
    )


def segment_summary(doc: Any, seg: Segment) -> str:
    """``users=2, groups, rules, percentage=5%, holdout`` for a segment document."""
    if not isinstance(doc, dict):
        return "empty"
    parts = []
    for key in ("users", "groups", "rules", "exclude_users"):
        if isinstance(doc.get(key), list) and doc[key]:
            parts.append(f"{key}={len(doc[key])}")
        if key == "users" and isinstance(doc.get(PARTS_KEY), list):
            parts.append(f"users in {len(doc[PARTS_KEY])} parts")
    if isinstance(doc.get("percentage"), int | float):
        parts.append(f"percentage={doc['percentage']:g}%")
    if seg.holdout:
        parts.append("holdout")
    return ", ".join(parts) if parts else "empty (no member)"


# --------------------------------------------------------------------------- linking


def compile_record(
    key: str, raw: str, records: Mapping[str, Record] | None = None
) -> Flag | Segment | ValidationError:
    """The flag or segment (by its key) a stored text compiles to, or why it does not; a
    segment stored in parts (:mod:`flagstaff.parts`) is compiled with its parts in ``records``."""
    try:
        if is_segment_key(key):
            return parse_segment_text(key, raw, parts=_part_texts(records.get if records else None))
        return parse_text(key, raw)
    except ValidationError as exc:
        return exc


def _part_texts(get: Callable[[str], Record | None] | None) -> Lookup:
    def lookup(key: str) -> str | None:
        record = get(key) if get is not None else None
        return None if record is None else record.raw

    return lookup


def store_env(
    records: Mapping[str, Record], revision: int = 0
) -> tuple[Snapshot, dict[str, ValidationError]]:
    """The snapshot of ``records`` (each flag linked to the store's segments and flags,
    as a client following the store holds it), and the documents that do not compile,
    by key (clients skip those)."""
    segments: dict[str, Segment] = {}
    flags: dict[str, Flag] = {}
    bad: dict[str, ValidationError] = {}
    for key, rec in records.items():
        if is_part_key(key):
            continue  # compiled with its segment's head
        item = compile_record(key, rec.raw, records)
        if isinstance(item, ValidationError):
            bad[key] = item
        elif isinstance(item, Segment):
            segments[item.name] = item
        else:
            flags[key] = item
    return Snapshot(flags, revision, time.time(), segments), bad
