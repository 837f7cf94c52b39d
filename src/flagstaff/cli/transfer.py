"""The commands that move flags in and out of a store, follow it, or check documents.

``export`` writes every flag to a file (atomically: a reader never sees half a
file) or copies a store to another; ``import`` loads a flags file or copies a
store, through :meth:`flagstaff.admin.Admin.import_documents` (all validated
before anything is written; ``--prune`` deletes what the source lacks).
``watch`` prints each change as it happens (after a reset, what differs from
what it last printed). ``check`` evaluates flags for a context given on the
command line (linked against the store's segments and flags, printing the value
each decision serves; ``check segment:NAME`` says whether the context is a
member); ``validate`` checks files without a store.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import queue
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flagstaff.admin import Admin, CopyResult, parse_document, read_documents
from flagstaff.cli._files import is_flags_mapping, opened, read_flag_set, read_flags_file
from flagstaff.cli._output import EXIT, Out, ProgressBar, UsageError, compact, decoded
from flagstaff.cli.segments import store_env
from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.document import is_segment_key, segment_name
from flagstaff.errors import ValidationError
from flagstaff.evaluate import evaluate, unknown
from flagstaff.model import Env, printable_text
from flagstaff.stores import Change, Disconnected, Reset, Resumed, Store, WatchEvent

__all__ = [
    "build_context",
    "cmd_check",
    "cmd_export",
    "cmd_import",
    "cmd_validate",
    "cmd_watch",
    "validate_file",
]

log = logging.getLogger("flagstaff.cli")


# --------------------------------------------------------------------------- export, import


def cmd_export(args: argparse.Namespace, out: Out) -> int:
    if args.to:
        return _copy(args, out, args.from_ or args.store, args.to)
    with opened(args.from_ or args.store) as store:
        docs = read_documents(store)
    text = json.dumps(docs, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if args.file in (None, "-"):
        out.stdout.write(text)
    else:
        _atomic_write(Path(args.file), text)
        out.note(f"exported {len(docs)} flags to {args.file}")
    return EXIT.OK


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_import(args: argparse.Namespace, out: Out) -> int:
    # A seed's data (`--format rollout|hanoi|reddit`) never reaches here: flagstaff.compat.cli
    # takes those runs over through the command registry (docs/migration.md).
    if args.file is not None and (args.from_ or args.to):
        raise UsageError("give either FILE or --from/--to, not both")
    if args.file is None:
        if not args.from_:
            raise UsageError("import needs FILE, or --from URL (and optionally --to URL)")
        return _copy(args, out, args.from_, args.to or args.store)
    docs = read_flag_set(args.file)
    return _import(args, out, docs, args.to or args.store)


def _copy(args: argparse.Namespace, out: Out, source: str, target: str) -> int:
    if source == target:
        raise UsageError("the source and the destination are the same store")
    with opened(source) as store:
        docs = read_documents(store)
    return _import(args, out, docs, target)


def _import(args: argparse.Namespace, out: Out, docs: Mapping[str, Any], target: str) -> int:
    show = args.progress if args.progress is not None else out.stderr.isatty() and len(docs) >= 100
    bar = ProgressBar(out.stderr, "importing") if show else None
    with opened(target) as store:
        try:
            result = Admin(store, author=args.author).import_documents(docs, prune=args.prune, progress=bar)
        finally:
            if bar is not None:
                bar.finish()
    _report_copy(out, result, target)
    return EXIT.OK


def _report_copy(out: Out, result: CopyResult, target: str) -> None:
    if out.json:
        out.emit(result.to_dict())
        return
    out.line(
        f"{target}: {len(result.created)} created, {len(result.updated)} updated, "
        f"{len(result.unchanged)} unchanged, {len(result.deleted)} deleted"
    )


# --------------------------------------------------------------------------- watch


def cmd_watch(args: argparse.Namespace, out: Out) -> int:
    # The one watch of this process, on purpose not a Follower: `watch` tails the store's
    # change log (every revision, from --since, deletions and invalid documents as stored),
    # where a Follower keeps a snapshot of the flags that parse and skips what it holds.
    events: queue.Queue[WatchEvent] = queue.Queue()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = 0
    with opened(args.store) as store:
        state = store.load()
        known = {name: rec.raw for name, rec in state.records.items()}
        since = state.revision if args.since is None else args.since
        watch = store.watch(events.put, since)
        if not out.json:
            out.note(f"watching {args.store} from revision {since} (Ctrl-C to stop)")
        out.stdout.flush()
        try:
            while args.count is None or seen < args.count:
                wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if wait <= 0:
                    break
                try:
                    event = events.get(timeout=wait)
                except queue.Empty:
                    continue
                if isinstance(event, Disconnected):
                    out.note(f"lost contact with the store: {event.reason} (changes follow when it is back)")
                    continue
                if isinstance(event, Resumed):
                    # The changes of the outage came before it: nothing to reload or print.
                    out.note(f"back in contact with the store: {event.reason} (nothing missed)")
                    continue
                changes = _reload(store, known, event) if isinstance(event, Reset) else [event]
                for change in changes:
                    _print_change(out, change)
                    if change.record is None:
                        known.pop(change.name, None)
                    else:
                        known[change.name] = change.record.raw
                    seen += 1
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a watch normally ends
        finally:
            watch.stop()
    return EXIT.OK


def _reload(store: Store, known: Mapping[str, str], reset: Reset) -> list[Change]:
    """After a reset, what changed compared with what we last printed."""
    log.info("watch reset (%s); reloading", reset.reason)
    state = store.load()
    changes = [Change(n, None, state.revision) for n in sorted(set(known) - set(state.records))]
    changes += [
        Change(n, rec, state.revision) for n, rec in sorted(state.records.items()) if known.get(n) != rec.raw
    ]
    return changes


def _print_change(out: Out, change: Change) -> None:
    rec = change.record
    doc = None if rec is None else decoded(rec.raw)
    when = dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    if out.json:
        data = {"flag": change.name, "revision": change.revision, "deleted": rec is None}
        if rec is not None:
            data.update(version=rec.version, document=doc)
        out.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    elif rec is None:
        out.line(f"{when}  rev {change.revision}  {change.name}  deleted")
    else:
        out.line(f"{when}  rev {change.revision}  {change.name}  v{rec.version}  {compact(doc)}")
    out.stdout.flush()


# --------------------------------------------------------------------------- check, validate


def build_context(args: argparse.Namespace) -> Context:
    return Context(
        user_id=args.user,
        user_name=args.user_name,
        groups=frozenset(args.group or ()),
        logged_in=True if args.logged_in else None,
        cookie_id=args.cookie,
        features=tuple(args.feature or ()),
        subdomain=args.subdomain,
        location=args.location,
        oauth_client=args.oauth_client,
        time=args.time if args.time is not None else time.time(),
        attributes=dict(args.attr or ()),
    )


def cmd_check(args: argparse.Namespace, out: Out) -> int:
    ctx = build_context(args)
    rows: list[dict[str, Any]] = []
    with opened(args.store) as store:
        state = store.load()
    # Linked against the store's segments and flags, as a client following it evaluates.
    env, bad = store_env(state.records, state.revision)
    for name in args.names:
        if is_segment_key(name):
            rows.append(_membership(name, env, bad, ctx))
            continue
        flag = env.flags.get(name)
        if flag is None and name not in state.records:
            rows.append(unknown(name).to_dict())
            continue
        if flag is None:
            error = f"bad document: {printable_text(str(bad[name]), newlines=False)}"
            rows.append(Decision(name, False, Reason.ERROR, error=error).to_dict())
            continue
        decision = evaluate(flag, ctx, ctx.time)
        rows.append({**decision.to_dict(), "value": flag.value_of(decision)})
    if out.json:
        out.emit(rows if len(rows) > 1 else rows[0])
    else:
        out.table(
            ["flag", "enabled", "variant", "reason", "rule", "value"],
            [
                [
                    r["flag"],
                    r["enabled"],
                    r.get("variant"),
                    r["reason"],
                    r.get("rule") or r.get("error"),
                    _shown(r),
                ]
                for r in rows
            ],
        )
    if any(r["reason"] == Reason.UNKNOWN_FLAG.value for r in rows):
        return EXIT.NOT_FOUND
    return EXIT.OK if all(r["enabled"] for r in rows) else EXIT.NO


def _shown(row: Mapping[str, Any]) -> Any:
    # A value that is the decision itself (no `values` key) is shown, not left blank: the
    # table then reads the same for every flag.
    return row.get("value", row["enabled"])


def _membership(key: str, env: Env, bad: Mapping[str, ValidationError], ctx: Context) -> dict[str, Any]:
    """``check segment:NAME``: whether the context is a member (enabled = member)."""
    name = segment_name(key)
    seg = env.segments.get(name)
    if seg is None:
        if key in bad:
            error = f"bad document: {printable_text(str(bad[key]), newlines=False)}"
            return {
                "flag": key,
                "segment": name,
                "enabled": False,
                "reason": Reason.ERROR.value,
                "error": error,
            }
        return {
            "flag": key,
            "segment": name,
            "enabled": False,
            "reason": Reason.UNKNOWN_FLAG.value,
            "error": f"no segment named {name!r}",
        }
    member = seg.contains(ctx)
    return {
        "flag": key,
        "segment": name,
        "enabled": member,
        "member": member,
        "reason": "member" if member else "not a member",
        "value": member,
    }


def validate_file(path: str, name: str | None = None) -> tuple[int, list[str]]:
    """Check one file; returns (documents checked, error lines ``name: path: message``)."""
    try:
        data = read_flags_file(path)
    except ValidationError as exc:
        return 0, [f"{path}: {p}" for p in exc.problems]
    single = name is not None or not is_flags_mapping(data)
    docs: dict[str, Any] = {name or Path(path).stem: data} if single else data
    errors: list[str] = []
    for flag_name, doc in docs.items():
        try:
            parse_document(flag_name, doc)  # a segment key (segment:NAME) as a segment
        except ValidationError as exc:
            errors += [f"{flag_name}: {p}" for p in exc.problems]
    return len(docs), errors


def cmd_validate(args: argparse.Namespace, out: Out) -> int:
    total = 0
    report: dict[str, list[str]] = {}
    for path in args.files:
        count, errors = validate_file(path, args.name)
        total += count
        report[path] = errors
    bad = sum(len(e) for e in report.values())
    if out.json:
        out.emit({"checked": total, "ok": bad == 0, "errors": report})
    else:
        many = len(args.files) > 1
        for path, errors in report.items():
            for err in errors:
                out.line(f"{path}: {err}" if many else err)
        summary = f"{total} flags checked in {len(args.files)} file(s): "
        out.note(summary + ("all valid" if bad == 0 else f"{bad} problem(s)"))
    return EXIT.OK if bad == 0 else EXIT.NO
