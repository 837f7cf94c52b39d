"""The commands on the flags of one store: read, write, and look back.

``list``, ``get``, ``history`` and ``diff`` read (``list`` shows flags; ``--segments``
adds the segments, which ``get segment:NAME`` shows too); ``set``, ``enable``,
``disable``, ``rollout``, ``add-user``, ``remove-user`` and ``delete`` write,
each through :class:`flagstaff.admin.Admin` (validated, compare-and-set) and
each printing one line per flag (``NAME: VERB (version N)``) or the outcome as
JSON. A stored document that fails validation is shown, escaped and marked
``INVALID``, never the end of a listing. ``rollout`` and ``add-user`` refuse a
flag that does not exist unless ``--create`` is given, naming the nearest
existing flags.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
from collections.abc import Callable, Sequence
from typing import Any

from flagstaff.admin import Admin, DiffEntry, Outcome, diff_documents
from flagstaff.cli._files import opened, read_flags_file, read_source
from flagstaff.cli._output import EXIT, Out, compact, decoded
from flagstaff.cli.blast import confirm_write
from flagstaff.cli.segments import compile_record, print_segment_rows, segment_rows
from flagstaff.document import is_segment_key, segment_name
from flagstaff.errors import NotFoundError, ValidationError
from flagstaff.model import decode_document, parse_text, printable_text
from flagstaff.parts import PARTS_KEY

__all__ = [
    "UnknownFlag",
    "cmd_add_user",
    "cmd_delete",
    "cmd_diff",
    "cmd_disable",
    "cmd_enable",
    "cmd_get",
    "cmd_history",
    "cmd_list",
    "cmd_remove_user",
    "cmd_rollout",
    "cmd_set",
    "parse_value",
]


def cmd_list(args: argparse.Namespace, out: Out) -> int:
    with opened(args.store) as store:
        state = store.load()
    rows = []
    # Segments share the store but are not flags: `list --segments` (or `segment list`) shows them.
    for name in sorted(n for n in state.records if not is_segment_key(n)):
        rec = state.records[name]
        try:
            flag = parse_text(name, rec.raw)
            status, desc = _summary(flag.switch.value, flag), flag.description
        except ValidationError as exc:  # one bad document: named, never the end of the listing
            status, desc = "INVALID", printable_text(str(exc), newlines=False)
        rows.append(
            {
                "flag": name,
                "version": rec.version,
                "status": status,
                "description": desc,
                "document": decoded(rec.raw),
            }
        )
    segments = segment_rows(state.records) if args.segments else None
    if out.json:
        data: dict[str, Any] = {"revision": state.revision, "flags": rows}
        if segments is not None:
            data["segments"] = segments
        out.emit(data)
        return EXIT.OK
    if not rows:
        out.note(f"no flags in {args.store}")
    else:
        out.table(
            ["flag", "version", "status", "description"],
            [[r["flag"], r["version"], r["status"], r["description"]] for r in rows],
        )
    if segments is not None:
        if not segments:
            out.note(f"no segments in {args.store}")
        else:
            if rows:
                out.line()
            print_segment_rows(out, segments)
    return EXIT.OK


def _summary(switch: str, flag: Any) -> str:
    if flag.archived:  # off for everyone whatever else it says (flagstaff restore NAME)
        return "archived"
    doc = flag.value if isinstance(flag.value, dict) else {}
    rules = doc.get("targeting") or []
    targeting = list(flag.selectors)
    targeting += [f"{k}={v:g}%" for k, v in flag.percentages.items()]
    if flag.experiment is not None:
        targeting.append("experiment")
    if rules:
        targeting.append(f"targeting ({len(rules)} rule{'s' if len(rules) != 1 else ''})")
    if "default" in doc:
        serve = doc["default"]
        targeting.append("default " + (serve if isinstance(serve, str) else compact(serve)))
    if switch == "off":
        return "off (killed)" if targeting else "off"
    if switch == "on":
        return "on"
    # What can only narrow the flag (deny, prerequisites) comes first; then what turns it on.
    parts = ["deny"] if doc.get("deny") else []
    if flag.requires:
        parts.append("requires " + " ".join(flag.requires))
    parts += targeting
    if flag.schedule is not None:
        parts.append("scheduled")
    elif not targeting:
        parts.append("off (no targeting)")
    return ", ".join(parts)


def cmd_get(args: argparse.Namespace, out: Out) -> int:
    with opened(args.store) as store:
        rec = Admin(store).get(args.name)
        # A segment key (segment:NAME) as a segment, with its parts if stored in parts.
        records = store.load().records if PARTS_KEY in rec.raw and is_segment_key(rec.name) else None
    doc = decoded(rec.raw)
    compiled = compile_record(rec.name, rec.raw, records)
    problem = compiled if isinstance(compiled, ValidationError) else None
    what = "segment" if is_segment_key(rec.name) else "flag"
    shown = segment_name(rec.name) if what == "segment" else rec.name
    if out.json:
        data: dict[str, Any] = {what: shown, "version": rec.version, "document": doc}
        if problem is not None:
            data["problems"] = [
                {"path": p.path, "message": printable_text(p.message)} for p in problem.problems
            ]
        out.emit(data)
    else:
        out.line(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True))
    if problem is not None:
        # What is stored is shown (escaped), and the answer is "no": clients skip this document.
        out.note(
            f"flagstaff: {what} {shown!r} (version {rec.version}) holds a bad document, which clients "
            f"skip: {printable_text(str(problem), newlines=False)}"
        )
        return EXIT.NO
    return EXIT.OK


def parse_value(text: str) -> Any:
    """A document from the command line: JSON, ``on``/``off``, or ``@file``."""
    if text.startswith("@"):
        return read_flags_file(text[1:])
    return decode_document(text)


def _write(args: argparse.Namespace, out: Out, action: Callable[[Admin], Outcome], verb: str) -> int:
    with opened(args.store) as store:
        outcome = action(Admin(store, author=args.author))
    if out.json:
        out.emit(outcome.to_dict())
    elif not outcome.changed:
        out.line(f"{outcome.name}: unchanged")
    else:
        version = outcome.record.version if outcome.record else None
        suffix = f" (version {version})" if version is not None else ""
        out.line(f"{outcome.name}: {verb}{suffix}")
        if outcome.after is not None:
            out.line(f"  {outcome.after}")
    return EXIT.OK


def cmd_set(args: argparse.Namespace, out: Out) -> int:
    value = parse_value(args.document)
    if not confirm_write(args, out, value):  # --blast: the radius shown, and the answer no
        return EXIT.NO
    return _write(args, out, lambda a: a.set(args.name, value, expect=args.expect), "set")


def cmd_enable(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.enable(args.name, everyone=args.all), "enabled")


def cmd_disable(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.disable(args.name), "disabled")


def cmd_rollout(args: argparse.Namespace, out: Out) -> int:
    return _write(
        args,
        out,
        lambda a: _creating(a, args, lambda: a.rollout(args.name, args.percent, create=args.create)),
        f"rolled out to {args.percent:g}%",
    )


def cmd_add_user(args: argparse.Namespace, out: Out) -> int:
    return _write(
        args,
        out,
        lambda a: _creating(a, args, lambda: a.add_user(args.name, args.user, create=args.create)),
        f"added user {args.user}",
    )


class UnknownFlag(NotFoundError):
    """A write to a flag that does not exist, with the nearest existing names (exit 3)."""

    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        super().__init__(name)
        hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        self.args = (f"no flag named {name!r}{hint} (--create makes a new flag)",)


def _creating(admin: Admin, args: argparse.Namespace, write: Callable[[], Outcome]) -> Outcome:
    # `rollout new_chekout 20` used to create a second flag silently while the real one stayed
    # at its old percentage; now a missing flag is refused with the names it was probably meant as.
    try:
        return write()
    except NotFoundError as exc:
        if exc.name != args.name:
            raise
        names = sorted(admin.store.load().records)
        raise UnknownFlag(args.name, difflib.get_close_matches(args.name, names, n=3)) from None


def cmd_remove_user(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.remove_user(args.name, args.user), f"removed user {args.user}")


def cmd_delete(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.delete(args.name, expect=args.expect, force=args.force), "deleted")


def cmd_history(args: argparse.Namespace, out: Out) -> int:
    with opened(args.store) as store:
        entries = store.history(args.name, limit=args.limit)
    rows = []
    for e in entries:
        action = "deleted" if e.after is None else "created" if e.before is None else "updated"
        rows.append(
            {
                "flag": e.name,
                "revision": e.revision,
                "version": e.version,
                "at": _iso(e.at),
                "author": e.author,
                "action": action,
                "before": None if e.before is None else decoded(e.before),
                "after": None if e.after is None else decoded(e.after),
            }
        )
    if out.json:
        out.emit(rows)
    elif not rows:
        out.note("no history" + (f" for {args.name!r}" if args.name else ""))
    else:
        out.table(
            ["revision", "at", "flag", "version", "author", "action", "document"],
            [
                [r["revision"], r["at"], r["flag"], r["version"], r["author"], r["action"], r["after"]]
                for r in rows
            ],
        )
    return EXIT.OK


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_diff(args: argparse.Namespace, out: Out) -> int:
    left_spec, right_spec = (args.store, args.a) if args.b is None else (args.a, args.b)
    left, right = read_source(left_spec), read_source(right_spec)
    entries = diff_documents(left, right)
    if out.json:
        out.emit({"left": left_spec, "right": right_spec, "differences": [e.to_dict() for e in entries]})
    elif not entries:
        out.note(f"no differences between {left_spec} and {right_spec}")
    else:
        _print_diff(out, entries, left_spec, right_spec)
    return EXIT.NO if entries else EXIT.OK


def _print_diff(out: Out, entries: Sequence[DiffEntry], left: str, right: str) -> None:
    out.line(f"--- {left}")
    out.line(f"+++ {right}")
    for e in entries:
        if e.left is not None:
            out.line(f"- {e.name}: {compact(e.left)}")
        if e.right is not None:
            out.line(f"+ {e.name}: {compact(e.right)}")
