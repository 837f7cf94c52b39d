"""``flagstaff scan PATH``: flag hygiene, read from the code's syntax tree.

The scan parses every Python file under PATH with :mod:`ast` (never imports
or runs it) and collects the flag names passed to evaluation calls:

* ``<anything>.is_enabled("x")``, ``.variant("x")``, ``.evaluate("x")``,
  ``.wait_for_change("x")``: the client, a scope, reddit's ``feature``,
  hanoi's ``rollout``, an app's ``flags`` object;
* ``is_enabled("x")`` called bare (an app's own helper);
* ``rollout.is_<name>()``: hanoi's per-feature shortcut (receiver named ``rollout``);
* ``@rollout.check("x")`` and ``@rollout.enabled("x")``: hanoi's decorators, which gate
  the function they wrap on flag ``x`` (receiver named ``rollout``);
* the same calls in templates (``.html``, ``.jinja``, ``.jinja2``, ``.j2``,
  ``.mako``), by a regular expression, string literals only.

A name given as a module-level string constant (``NEW_FLOW = "new_flow"``) counts
as that literal. The scan then compares the names with the flags defined in a
store or a flags file (``--flags``, else ``--store`` when given) and reports:

==============  ==============================================================
``undefined``   a flag referenced in code but not defined
``unused``      a flag defined but referenced nowhere
``dynamic``     a flag name that is not a string literal (f-string, variable…):
                no tool, and no grep, can tell which flag it is
``stale``       a ``"kind": "temporary"`` flag older than ``--max-age`` days
                (age from its ``created`` metadata, else its oldest history entry)
``idle``        with ``--usage EVENTS_DB``: a flag no client evaluated in the last
                ``--idle-days`` days (the usage counts of :mod:`flagstaff.usage`)
``unparsed``    a file that is not valid Python: the scan of it is incomplete
==============  ==============================================================

Exit codes, for CI: 0 nothing found; 1 something found (categories given to
``--ignore`` are neither shown nor counted); 2 usage (no such path, unreadable
flags file or event store); 5 the store is unavailable.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import fnmatch
import os
import re
import shlex
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagstaff.admin import read_documents
from flagstaff.cli._files import read_flag_set
from flagstaff.cli._output import EXIT, Out, UsageError
from flagstaff.document import is_segment_key
from flagstaff.stores import open_store
from flagstaff.usage import UsageTable, read_usage

__all__ = [
    "CATEGORIES",
    "Finding",
    "Idle",
    "Reference",
    "Report",
    "find_references",
    "register",
    "scan",
]

CATEGORIES = ("undefined", "unused", "dynamic", "stale", "idle", "unparsed")
METHODS = frozenset({"is_enabled", "variant", "evaluate", "wait_for_change"})
BARE = frozenset({"is_enabled"})
HANOI_RECEIVER = "rollout"
# hanoi's decorators take the flag name first: ``@rollout.check("x", 1)``, ``@rollout.enabled("x")``.
HANOI_DECORATORS = frozenset({"check", "enabled"})
TEMPLATE_SUFFIXES = frozenset({".html", ".htm", ".jinja", ".jinja2", ".j2", ".mako"})
SKIP_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".tox", "build", "dist"}
)
_TEMPLATE_CALL = re.compile(r"\b(?:is_enabled|variant|evaluate)\(\s*(['\"])([^'\"\s]+)\1")
_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Reference:
    """One place code names a flag (``flag`` is ``None`` when not a literal)."""

    flag: str | None
    file: str
    line: int
    column: int
    call: str
    """The call as written, e.g. ``client.is_enabled('x')`` (shortened)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "call": self.call,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: its category, the flag (if known), where, and what to say."""

    category: str
    flag: str | None
    message: str
    where: tuple[Reference, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"category": self.category, "flag": self.flag, "message": self.message}
        if self.where:
            out["where"] = [r.to_dict() for r in self.where]
        out.update(self.facts)
        return out


@dataclass(frozen=True, slots=True)
class Report:
    """What a scan found; ``findings`` are sorted by category then flag."""

    files: int
    references: tuple[Reference, ...]
    defined: int | None
    """How many flags the definitions held (``None``: scanned without definitions)."""
    findings: tuple[Finding, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "defined": self.defined,
            "references": [r.to_dict() for r in self.references],
            "findings": [f.to_dict() for f in self.findings],
        }


# --------------------------------------------------------------------------- finding references


def find_references(source: str, filename: str = "<string>") -> list[Reference]:
    """The flag references in one Python module's source. Raises ``SyntaxError``."""
    tree = ast.parse(source, filename)
    constants = _module_constants(tree)
    found: list[Reference] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            method = func.attr
            if method in METHODS or (method in HANOI_DECORATORS and _receiver(func.value) == HANOI_RECEIVER):
                arg = _name_argument(node)
            elif method.startswith("is_") and len(method) > 3 and _receiver(func.value) == HANOI_RECEIVER:
                found.append(_ref(method[3:], filename, node))  # rollout.is_<name>()
                continue
            else:
                continue
        elif isinstance(func, ast.Name) and func.id in BARE:
            arg = _name_argument(node)
        else:
            continue
        if arg is None:
            continue  # no name given: not a flag evaluation we can judge
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.append(_ref(arg.value, filename, node))
        elif isinstance(arg, ast.Name) and arg.id in constants:
            found.append(_ref(constants[arg.id], filename, node))
        else:
            found.append(_ref(None, filename, node))
    found.sort(key=lambda r: (r.line, r.column))
    return found


def _module_constants(tree: ast.Module) -> dict[str, str]:
    """``NAME = "text"`` at module level and never assigned again (else not a constant)."""
    assigned = Counter(
        node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    )
    constants: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, value = stmt.targets[0].id, stmt.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and assigned[name] == 1:
                constants[name] = value.value
    return constants


def _name_argument(call: ast.Call) -> ast.expr | None:
    if call.args:
        first = call.args[0]
        return None if isinstance(first, ast.Starred) else first
    for kw in call.keywords:
        if kw.arg in ("name", "flag", "feature", "key"):
            return kw.value
    return None


def _receiver(node: ast.expr) -> str | None:
    """The last name of a call's receiver: ``rollout`` for ``self.app.rollout``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _ref(flag: str | None, filename: str, node: ast.Call) -> Reference:
    call = ast.unparse(node)
    if len(call) > 80:
        call = call[:79] + "…"
    return Reference(flag, filename, node.lineno, node.col_offset + 1, call)


def find_template_references(text: str, filename: str) -> list[Reference]:
    """Flag references in a template (literal names only, found by pattern)."""
    found = []
    for match in _TEMPLATE_CALL.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        found.append(Reference(match.group(2), filename, line, column, match.group(0) + ")"))
    return found


# --------------------------------------------------------------------------- walking


def _files(paths: Sequence[Path], exclude: Sequence[str]) -> Iterator[Path]:
    for root in paths:
        if root.is_file():
            yield root
            continue
        for directory, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            for name in sorted(names):
                path = Path(directory, name)
                if path.suffix == ".py" or path.suffix in TEMPLATE_SUFFIXES:
                    rel = path.relative_to(root).as_posix()
                    if not any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(name, pat) for pat in exclude):
                        yield path


# --------------------------------------------------------------------------- the scan


@dataclass(frozen=True, slots=True)
class Definitions:
    """The flags code is compared with: documents, and how old each flag is."""

    documents: Mapping[str, Any]
    created: Callable[[str], float | None]
    """Epoch seconds a flag was created, ``None`` when unknown."""


@dataclass(frozen=True, slots=True)
class Idle:
    """What the ``idle`` check reads: the usage an event store holds (read from
    ``days`` ago on), and how many days without an evaluation make a flag idle."""

    usage: UsageTable
    days: float


def scan(
    paths: Sequence[str | os.PathLike[str]],
    definitions: Definitions | None,
    *,
    max_age_days: float = 90.0,
    exclude: Sequence[str] = (),
    now: float | None = None,
    idle: Idle | None = None,
) -> Report:
    """Scan ``paths`` (files or directories) and compare with ``definitions``.
    File names in the report are relative to the directory given, or as given.
    With ``idle``, the flags defined (else the flags referenced) that no client
    evaluated in ``idle.days`` days are ``idle`` findings."""
    roots = [Path(p) for p in paths]
    references: list[Reference] = []
    findings: list[Finding] = []
    files = 0
    for path in _files(roots, exclude):
        files += 1
        shown = _shown(path, roots)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            findings.append(Finding("unparsed", None, f"{shown}: cannot read: {exc}"))
            continue
        if path.suffix != ".py":
            references.extend(find_template_references(text, shown))
            continue
        try:
            references.extend(find_references(text, shown))
        except SyntaxError as exc:
            findings.append(Finding("unparsed", None, f"{shown}:{exc.lineno}: not valid Python: {exc.msg}"))
    by_flag: dict[str, list[Reference]] = {}
    for ref in references:
        if ref.flag is None:
            findings.append(
                Finding("dynamic", None, f"flag name is not a string literal: {ref.call}", (ref,))
            )
        else:
            by_flag.setdefault(ref.flag, []).append(ref)
    if definitions is not None:
        docs = definitions.documents
        for name in sorted(by_flag.keys() - docs.keys()):
            findings.append(
                Finding("undefined", name, f"{name!r} is referenced but not defined", tuple(by_flag[name]))
            )
        for name in sorted(docs.keys() - by_flag.keys()):
            findings.append(Finding("unused", name, f"{name!r} is defined but referenced nowhere"))
        findings.extend(_stale(docs, definitions.created, max_age_days, time.time() if now is None else now))
    if idle is not None:
        names = definitions.documents.keys() if definitions is not None else by_flag.keys()
        created = definitions.created if definitions is not None else lambda name: None
        findings.extend(_idle(sorted(names), created, idle, time.time() if now is None else now))
    order = {c: i for i, c in enumerate(CATEGORIES)}
    findings.sort(key=lambda f: (order[f.category], f.flag or "", f.message))
    return Report(
        files, tuple(references), None if definitions is None else len(definitions.documents), tuple(findings)
    )


_TEMPORARY = ("temporary", "release", "experiment")  # flagstaff.model.Kind.temporary


def _archive(name: str) -> str:
    """The command that retires a stale flag (its history kept; ``flagstaff restore`` undoes it)."""
    return f"flagstaff archive {shlex.quote(name)}"


def _shown(path: Path, roots: Sequence[Path]) -> str:
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.as_posix()


def _stale(
    docs: Mapping[str, Any], created: Callable[[str], float | None], max_age_days: float, now: float
) -> Iterator[Finding]:
    for name in sorted(docs):
        doc = docs[name]
        # release and experiment flags are temporary too; an archived flag is already retired.
        if not isinstance(doc, dict) or doc.get("kind") not in _TEMPORARY or doc.get("archived") is True:
            continue
        born = created(name)
        if born is None:
            continue  # age unknown: nothing to judge
        age = (now - born) / _DAY
        if age > max_age_days:
            owner = doc.get("owner")
            since = dt.datetime.fromtimestamp(born, dt.UTC).date().isoformat()
            message = f"{name!r} is temporary and {age:.0f} days old (since {since}"
            message += f", owner {owner})" if owner else ")"
            facts = {"age_days": round(age, 1), "since": since, "owner": owner, "archive": _archive(name)}
            yield Finding("stale", name, message, facts=facts)


def _idle(
    names: Sequence[str], created: Callable[[str], float | None], idle: Idle, now: float
) -> Iterator[Finding]:
    """The flags with no evaluation counted in the last ``idle.days`` days. A flag never
    counted is judged only when the usage goes back that far (else it may have been
    evaluated before the counting began), and only when it is older than that."""
    horizon = now - idle.days * _DAY
    usage = idle.usage
    covered = usage.first is not None and usage.first <= horizon
    for name in names:
        last = usage.last_seen(name)
        if last is not None and last >= horizon:
            continue
        born = created(name)
        if born is not None and born > horizon:
            continue  # younger than the idle period: not judged
        if last is None:
            if not covered:
                continue
            message = f"{name!r} was never evaluated while usage was counted (for {idle.days:g} days or more)"
            facts: dict[str, Any] = {"last_seen": None, "idle_days": None}
        else:
            days = (now - last) / _DAY
            since = dt.datetime.fromtimestamp(last, dt.UTC).isoformat(timespec="seconds")
            message = f"{name!r} was last evaluated {days:.0f} days ago ({since})"
            facts = {"last_seen": since, "idle_days": round(days, 1)}
        yield Finding("idle", name, message, facts=facts)


def parse_created(value: Any) -> float | None:
    """``created`` metadata as epoch seconds: an ISO date or datetime (UTC if no offset)."""
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


# --------------------------------------------------------------------------- command line


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``flagstaff scan`` (see the module doc)."""
    p = command("scan", cmd_scan, "flag hygiene: undefined, unused, dynamic and stale flags in code")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to scan")
    p.add_argument(
        "--flags", metavar="SOURCE", help="flags file or store URL defining the flags (default: --store)"
    )
    p.add_argument(
        "--max-age", type=float, default=90.0, metavar="DAYS", help="temporary flags older are stale"
    )
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip matching files")
    p.add_argument(
        "--usage",
        metavar="EVENTS_DB",
        help="event store with usage counts: report flags not evaluated lately",
    )
    p.add_argument(
        "--idle-days", type=float, metavar="DAYS", help="with --usage: flags not evaluated for this long (30)"
    )
    p.add_argument(
        "--ignore", action="append", default=[], choices=CATEGORIES, metavar="CATEGORY", help="don't report"
    )


def cmd_scan(args: argparse.Namespace, out: Out) -> int:
    for path in args.paths:
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such file or directory")
    source = args.flags or (args.store if args.store_given else None)
    idle = _idle_check(args.usage, args.idle_days)
    definitions = _definitions(source) if source else None
    report = scan(args.paths, definitions, max_age_days=args.max_age, exclude=args.exclude, idle=idle)
    findings = [f for f in report.findings if f.category not in args.ignore]
    if out.json:
        data = report.to_dict()
        data["source"] = source
        data["findings"] = [f.to_dict() for f in findings]
        out.emit(data)
    else:
        _print(out, report, findings, source, args.max_age)
    return EXIT.NO if findings else EXIT.OK


def _idle_check(path: str | None, days: float | None) -> Idle | None:
    if path is None:
        if days is not None:
            raise UsageError("--idle-days needs --usage EVENTS_DB")
        return None
    days = 30.0 if days is None else days
    if not days > 0:
        raise UsageError(f"--idle-days must be a positive number of days, not {days:g}")
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such event store")
    try:
        usage = read_usage(path, since=time.time() - days * _DAY)
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: not a readable event store: {exc}") from None
    if usage is None:
        raise UsageError(f"{path}: holds no usage counts (record them with RecorderOptions(usage=True))")
    return Idle(usage, days)


def _definitions(source: str) -> Definitions:
    # Segments (``segment:NAME``) share the store and the export file, but code never
    # evaluates one by name: they are neither defined flags nor unused ones.
    if "://" not in source:
        docs = _flags_only(read_flag_set(source))
        return Definitions(docs, lambda name: parse_created(_meta(docs, name)))
    store = open_store(source)
    try:
        docs = _flags_only(read_documents(store))
        born: dict[str, float | None] = {}
        for name, doc in docs.items():
            when = parse_created(_meta(docs, name))
            if when is None and isinstance(doc, dict) and doc.get("kind") in _TEMPORARY:
                history = store.history(name, limit=1000)
                when = min((h.at for h in history), default=None)  # the oldest entry: its creation
            born[name] = when
    finally:
        store.close()
    return Definitions(docs, born.get)


def _flags_only(docs: Mapping[str, Any]) -> dict[str, Any]:
    return {name: doc for name, doc in docs.items() if not is_segment_key(name)}


def _meta(docs: Mapping[str, Any], name: str) -> Any:
    doc = docs.get(name)
    return doc.get("created") if isinstance(doc, dict) else None


_TITLES = {
    "undefined": "referenced but not defined",
    "unused": "defined but referenced nowhere",
    "dynamic": "flag names that are not string literals",
    "stale": "temporary flags older than {age:g} days",
    "idle": "flags not evaluated lately",
    "unparsed": "files that could not be parsed",
}


def _print(out: Out, report: Report, findings: Sequence[Finding], source: str | None, max_age: float) -> None:
    flags = len({r.flag for r in report.references if r.flag is not None})
    against = f"; {report.defined} flags defined in {source}" if source else "; no definitions (use --flags)"
    out.line(f"scanned {report.files} files: {len(report.references)} references to {flags} flags{against}")
    for category in CATEGORIES:
        group = [f for f in findings if f.category == category]
        if not group:
            continue
        out.line("")
        out.line(f"{_TITLES[category].format(age=max_age)} ({len(group)}):")
        for f in group:
            if f.where:
                for ref in f.where:
                    label = ref.flag if category == "undefined" else ref.call
                    out.line(f"  {ref.file}:{ref.line}:{ref.column}  {label}")
            elif category == "unused":
                out.line(f"  {f.flag}")
            elif category == "stale" and f.flag is not None:
                out.line(f"  {f.message}; retire it: {_archive(f.flag)}")
            else:
                out.line(f"  {f.message}")
    if not findings:
        out.line("no findings")
