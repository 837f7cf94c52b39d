"""``flagstaff``: the command line over any store URL.

Every write goes through :mod:`flagstaff.admin` (validated, compare-and-set).
Output is an aligned table for people, or JSON with ``--json`` for scripts.
Errors are one line on stderr (``--debug`` adds the traceback). Exit codes:

===  ==========================================================================
0    success (``check``: every flag asked about is enabled; ``diff``: no difference)
1    a "no": invalid documents (``set``, ``import``, ``validate``), ``check``
     found a flag disabled, ``diff`` found differences, ``enable`` had nothing
     to enable
2    usage: bad arguments, an unreadable file, an unsupported store URL
3    not found: no flag of that name
4    conflict: the flag kept changing under us (compare-and-set retries spent)
     or ``--expect`` did not match
5    the store is unavailable (unreachable, locked, full)
130  interrupted (Ctrl-C), except for ``watch``, where Ctrl-C is the normal end
===  ==========================================================================

See ``docs/cli.md`` for every command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import queue
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

from flagstaff.admin import (
    Admin,
    CopyResult,
    DiffEntry,
    NothingToEnable,
    Outcome,
    default_author,
    diff_documents,
    read_documents,
)
from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.errors import (
    ConflictError,
    FlagstaffError,
    NotFoundError,
    Problem,
    StoreError,
    StoreUnavailable,
    UnsupportedStoreURL,
    ValidationError,
)
from flagstaff.evaluate import evaluate, unknown
from flagstaff.model import TOP_KEYS, decode_document, parse_flag
from flagstaff.stores import Change, Reset, Store, WatchEvent, open_store

__all__ = ["EXIT", "main"]

log = logging.getLogger("flagstaff.cli")

DEFAULT_STORE = "sqlite:///flagstaff.db"


class EXIT:
    """Exit codes scripts can rely on (see the module doc)."""

    OK = 0
    NO = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    UNAVAILABLE = 5
    INTERRUPTED = 130


class UsageError(FlagstaffError):
    """Bad arguments or an unreadable input file (exit 2)."""


class Failed(FlagstaffError):
    """A command's answer is "no" and it has already said why (exit 1)."""


# --------------------------------------------------------------------------- output


class Out:
    """Where a command writes: a table or JSON on stdout, notes on stderr."""

    def __init__(self, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json = as_json
        self.stdout = stdout
        self.stderr = stderr

    def emit(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def note(self, text: str) -> None:
        self.stderr.write(text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.stdout.write(format_table(headers, rows))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> str:
    """An aligned, plain-text table (two spaces between columns)."""
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines) + "\n"


def _cell(value: Any, max_width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("\n", " ")
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class ProgressBar:
    """A one-line progress bar on stderr, redrawn in place (no dependency)."""

    def __init__(self, stream: TextIO, label: str, width: int = 30) -> None:
        self.stream = stream
        self.label = label
        self.width = width
        self._last = -1.0
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return  # redraw at most ten times a second
        self._last = now
        frac = done / total if total else 1.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {frac:4.0%}")
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- inputs


def read_flags_file(path: str) -> Any:
    """Decode a JSON (or, with PyYAML installed, YAML) file."""
    p = Path(path)
    try:
        text = sys.stdin.read() if path == "-" else p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {path}: not UTF-8 text") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UsageError(f"{path}: reading YAML needs PyYAML: pip install 'flagstaff[yaml]'") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValidationError([Problem("", f"not YAML: {exc}")]) from None
    return decode_document(text)


def is_flags_mapping(data: Any) -> bool:
    """A flags file maps names to documents; a single document uses flag keys.

    An object whose keys are all flag-document keys (``users``, ``enabled``…)
    is read as one document; any other object as a map of flags.
    """
    if not isinstance(data, dict):
        return False
    return not data or not set(data) <= TOP_KEYS


def read_flag_set(path: str) -> dict[str, Any]:
    """A flags file (name -> document) or a store export."""
    data = read_flags_file(path)
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected an object mapping flag names to documents")
    return data


def read_source(spec: str) -> dict[str, Any]:
    """Documents from a store URL or a flags file."""
    if "://" in spec:
        with opened(spec) as store:
            return read_documents(store)
    return read_flag_set(spec)


@contextmanager
def opened(url: str) -> Iterator[Store]:
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def parse_value(text: str) -> Any:
    """A document from the command line: JSON, ``on``/``off``, or ``@file``."""
    if text.startswith("@"):
        return read_flags_file(text[1:])
    return decode_document(text)


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 100")
    return value


def _attr(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:  # numbers and booleans as JSON, anything else as a string
        return key, json.loads(value)
    except ValueError:
        return key, value


# --------------------------------------------------------------------------- commands


def cmd_list(args: argparse.Namespace, out: Out) -> int:
    with opened(args.store) as store:
        state = store.load()
    rows = []
    for name in sorted(state.records):
        rec = state.records[name]
        try:
            flag = parse_flag(name, decode_document(rec.raw))
            status, desc = _summary(flag.switch.value, flag), flag.description
        except ValidationError as exc:
            status, desc = "INVALID", str(exc)
        rows.append(
            {
                "flag": name,
                "version": rec.version,
                "status": status,
                "description": desc,
                "document": _decoded(rec.raw),
            }
        )
    if out.json:
        out.emit({"revision": state.revision, "flags": rows})
    elif not rows:
        out.note(f"no flags in {args.store}")
    else:
        out.table(
            ["flag", "version", "status", "description"],
            [[r["flag"], r["version"], r["status"], r["description"]] for r in rows],
        )
    return EXIT.OK


def _summary(switch: str, flag: Any) -> str:
    if switch == "off":
        return "off (killed)" if flag.selectors or flag.percentages or flag.experiment else "off"
    if switch == "on":
        return "on"
    parts = list(flag.selectors)
    parts += [f"{k}={v:g}%" for k, v in flag.percentages.items()]
    if flag.experiment is not None:
        parts.append("experiment")
    if flag.schedule is not None:
        parts.append("scheduled")
    return ", ".join(parts) if parts else "off (no targeting)"


def cmd_get(args: argparse.Namespace, out: Out) -> int:
    with opened(args.store) as store:
        rec = Admin(store).get(args.name)
    doc = _decoded(rec.raw)
    if out.json:
        out.emit({"flag": rec.name, "version": rec.version, "document": doc})
    else:
        out.line(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True))
    return EXIT.OK


def _decoded(raw: str) -> Any:
    try:
        return decode_document(raw)
    except ValidationError:
        return raw


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
    return _write(args, out, lambda a: a.set(args.name, value, expect=args.expect), "set")


def cmd_enable(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.enable(args.name, everyone=args.all), "enabled")


def cmd_disable(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.disable(args.name), "disabled")


def cmd_rollout(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.rollout(args.name, args.percent), f"rolled out to {args.percent:g}%")


def cmd_add_user(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.add_user(args.name, args.user), f"added user {args.user}")


def cmd_remove_user(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.remove_user(args.name, args.user), f"removed user {args.user}")


def cmd_delete(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, lambda a: a.delete(args.name, expect=args.expect), "deleted")


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
                "before": None if e.before is None else _decoded(e.before),
                "after": None if e.after is None else _decoded(e.after),
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
            out.line(f"- {e.name}: {_compact(e.left)}")
        if e.right is not None:
            out.line(f"+ {e.name}: {_compact(e.right)}")


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
    from flagstaff.compat import cli as seeds  # rollout, hanoi and reddit data (docs/migration.md)

    if seeds.wants(args):
        return seeds.import_seed(args, out)
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


def cmd_watch(args: argparse.Namespace, out: Out) -> int:
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
    doc = None if rec is None else _decoded(rec.raw)
    when = dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    if out.json:
        data = {"flag": change.name, "revision": change.revision, "deleted": rec is None}
        if rec is not None:
            data.update(version=rec.version, document=doc)
        out.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    elif rec is None:
        out.line(f"{when}  rev {change.revision}  {change.name}  deleted")
    else:
        out.line(f"{when}  rev {change.revision}  {change.name}  v{rec.version}  {_compact(doc)}")
    out.stdout.flush()


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
    decisions: list[Decision] = []
    with opened(args.store) as store:
        for name in args.names:
            rec = store.get(name)
            if rec is None:
                decisions.append(unknown(name))
                continue
            try:
                flag = parse_flag(name, decode_document(rec.raw))
            except ValidationError as exc:
                decisions.append(Decision(name, False, Reason.ERROR, error=str(exc)))
                continue
            decisions.append(evaluate(flag, ctx, ctx.time))
    if out.json:
        out.emit([d.to_dict() for d in decisions] if len(decisions) > 1 else decisions[0].to_dict())
    else:
        out.table(
            ["flag", "enabled", "variant", "reason", "rule"],
            [[d.flag, d.enabled, d.variant, d.reason.value, d.rule or d.error] for d in decisions],
        )
    if any(d.reason is Reason.UNKNOWN_FLAG for d in decisions):
        return EXIT.NOT_FOUND
    return EXIT.OK if all(d.enabled for d in decisions) else EXIT.NO


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
            parse_flag(flag_name, doc)
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


def cmd_demo(args: argparse.Namespace, out: Out) -> int:
    from flagstaff.demo import run_demo

    return run_demo(
        store_url=args.store if args.store_given else None,
        flags_path=args.flags,
        out=out.stdout,
        as_json=out.json,
        author=args.author,
    )


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the command: the copies on
    # the subcommands default to SUPPRESS so they do not overwrite the top ones.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL", help="store URL")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
    common.add_argument("--author", default=argparse.SUPPRESS, help="author recorded in history")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    parser = argparse.ArgumentParser(
        prog="flagstaff",
        description="Feature flags over any store URL. Exit codes: 0 ok, 1 no/invalid, 2 usage, "
        "3 not found, 4 conflict, 5 store unavailable.",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help=f"store URL (default: $FLAGSTAFF_STORE, else {DEFAULT_STORE})",
    )
    parser.add_argument("--json", action="store_true", default=False, help="JSON output for scripts")
    parser.add_argument("--author", default=None, help="author recorded in history (default: user@host)")
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, fn: Callable[[argparse.Namespace, Out], int], help_: str) -> Any:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    command("list", cmd_list, "list flags with their version and status")
    p = command("get", cmd_get, "print one flag's document")
    p.add_argument("name")
    p = command("set", cmd_set, "write a flag document (validated first)")
    p.add_argument("name")
    p.add_argument("document", help="JSON, on/off, a percentage, or @FILE")
    p.add_argument("--expect", type=int, metavar="VERSION", help="only if the flag is at VERSION (0: new)")
    p = command("enable", cmd_enable, "remove a flag's kill switch")
    p.add_argument("name")
    p.add_argument("--all", action="store_true", help="turn the flag on for everyone")
    p = command("disable", cmd_disable, "kill switch: turn a flag off for everyone, keeping its targeting")
    p.add_argument("name")
    p = command("rollout", cmd_rollout, "set the percentage of users a flag is on for")
    p.add_argument("name")
    p.add_argument("percent", type=_percent)
    p = command("add-user", cmd_add_user, "turn a flag on for one user id")
    p.add_argument("name")
    p.add_argument("user")
    p = command("remove-user", cmd_remove_user, "remove a user id from a flag")
    p.add_argument("name")
    p.add_argument("user")
    p = command("delete", cmd_delete, "delete a flag")
    p.add_argument("name")
    p.add_argument("--expect", type=int, metavar="VERSION", help="only if the flag is at VERSION")
    p = command("history", cmd_history, "who changed what, newest first")
    p.add_argument("name", nargs="?")
    p.add_argument("--limit", type=int, default=20)
    p = command("diff", cmd_diff, "compare flags: the store with A, or A with B (URLs or files)")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B", nargs="?")
    for name, fn, help_ in (
        ("export", cmd_export, "write every flag to FILE (or stdout), or copy --from URL --to URL"),
        ("import", cmd_import, "load flags from FILE, or copy --from URL [--to URL]"),
    ):
        p = command(name, fn, help_)
        p.add_argument("file", nargs="?", metavar="FILE")
        p.add_argument("--from", dest="from_", metavar="URL", help="source store (default: --store)")
        p.add_argument("--to", metavar="URL", help="destination store")
        p.add_argument("--prune", action="store_true", help="delete destination flags not in the source")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    from flagstaff.compat.cli import add_import_arguments

    add_import_arguments(p)  # `p` is import's: --format rollout|hanoi|reddit, --dry-run
    p = command("watch", cmd_watch, "print changes as they happen")
    p.add_argument("--count", type=int, metavar="N", help="stop after N changes")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("--since", type=int, metavar="REV", help="replay changes after revision REV first")
    p = command("check", cmd_check, "evaluate flags for a context and print the decision")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--user", help="user id")
    p.add_argument("--user-name", help="user name")
    p.add_argument("--group", action="append", metavar="G", help="group (repeatable)")
    p.add_argument("--logged-in", action="store_true", help="logged in (implied by --user)")
    p.add_argument("--attr", action="append", type=_attr, metavar="K=V", help="attribute (repeatable)")
    p.add_argument("--cookie", help="cookie id of a logged-out visitor")
    p.add_argument("--feature", action="append", metavar="F", help="?feature= value (repeatable)")
    p.add_argument("--subdomain")
    p.add_argument("--location")
    p.add_argument("--oauth-client")
    p.add_argument("--time", type=float, metavar="EPOCH", help="request time (default: now)")
    p = command("validate", cmd_validate, "check flag documents in files (name -> document, or one)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--name", help="treat each file as one document for the flag NAME")
    p = command("demo", cmd_demo, "load examples/flags.json into a store and show decisions")
    p.add_argument("--flags", metavar="FILE", help="flags file (default: examples/flags.json)")
    for module_name in EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not f"{module_name}.".startswith(f"{exc.name}."):
                raise  # a dependency of an existing module is missing: say so
            continue
        module.register(command)
    return parser


# Modules that add commands: each has ``register(command)``, where ``command(name, fn, help)``
# returns the new subparser. They must import their heavy dependencies inside the command
# functions, so ``flagstaff --help`` works on a core install.
EXTENSIONS: tuple[str, ...] = ("flagstaff.http.cli", "flagstaff.scan")


# --------------------------------------------------------------------------- main


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    env_store = os.environ.get("FLAGSTAFF_STORE")
    args.store_given = args.store is not None or bool(env_store)
    args.store = args.store or env_store or DEFAULT_STORE
    args.author = args.author or default_author()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=stderr)
    out = Out(args.json, stdout, stderr)
    try:
        code: int = args.fn(args, out)
        return code
    except KeyboardInterrupt:
        return EXIT.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`flagstaff list | head -3`): that is not an error.
        _silence_stdout(stdout)
        return EXIT.OK
    except Exception as exc:
        code = _exit_code(exc)
        if args.debug or code == 70:
            traceback.print_exc(file=stderr)
        _error(out, exc, code)
        return code


def _silence_stdout(stdout: TextIO) -> None:
    # Python flushes stdout at exit and would report the broken pipe again.
    try:
        fd = stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError) as exc:  # not a real file (tests pass a StringIO)
        log.debug("cannot silence stdout: %s", exc)


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, ValidationError | NothingToEnable | Failed):
        return EXIT.NO
    if isinstance(exc, NotFoundError):
        return EXIT.NOT_FOUND
    if isinstance(exc, ConflictError):
        return EXIT.CONFLICT
    if isinstance(exc, UsageError | UnsupportedStoreURL):
        return EXIT.USAGE
    if isinstance(exc, StoreUnavailable | StoreError):
        return EXIT.UNAVAILABLE
    return 70  # a bug: EX_SOFTWARE, with the traceback


def _error(out: Out, exc: BaseException, code: int) -> None:
    message = str(exc) if isinstance(exc, FlagstaffError) else f"{type(exc).__name__}: {exc}"
    if out.json:
        data: dict[str, Any] = {"error": message, "exit": code}
        if isinstance(exc, ValidationError):
            data["problems"] = [{"path": p.path, "message": p.message} for p in exc.problems]
        out.note(json.dumps(data, ensure_ascii=False))
    else:
        out.note(f"flagstaff: error: {message}")


def run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    run()
