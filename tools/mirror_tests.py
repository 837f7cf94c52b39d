#!/usr/bin/env python3
"""Lay the flat ``tests/`` out like the package, with ``git mv``, and fix what names the moved files.

Run from the repository root, on a clean work tree (commit first; ``git diff`` shows the result,
``git reset --hard`` undoes it)::

    python3 tools/mirror_tests.py            # move, rewrite, report
    python3 tools/mirror_tests.py --dry-run  # say what it would move, change nothing

The layout (issue 13, review section P6)::

    tests/__init__.py         tests is a package: modules are tests.<area>.<name>
    tests/conftest.py         the CI no-skip policy (stays)
    tests/_support/           the harness: servers, proxies, helpers (not tests)
    tests/golden/ tests/data/ (stay)
    tests/engine/ client/ stores/ http/ cli/ compat/ integrations/
    tests/test_*.py           the few that test the whole project (README, docs, exports...)

How a file is placed: the tables below first (``SUPPORT``, ``TOP``, ``EXPLICIT``), then the
prefix rules (``PREFIXES``: ``test_store_*`` -> ``stores/``...), so files the tables do not
know (added since) are placed too; any other module that is not a test goes to ``_support/``.
A test file no rule places stays at the top and is listed as UNPLACED.

How the support code is imported afterwards: ``tests`` becomes a package (an ``__init__.py``
in it and in each area), so pytest's default import mode puts the repository root on
``sys.path`` and names each test module ``tests.<area>.<name>``: two areas may hold files of
the same name, and ``from http_support import X`` becomes ``from tests._support.http_server
import X``. No ``pythonpath`` setting is needed. Three support modules are renamed:
``http_support`` -> ``http_server`` (not ``http``: a script run from ``_support/`` would shadow
the standard library's ``http``), ``web_support`` -> ``web``, ``client_support`` -> ``client``.

What it rewrites, in every file it reads (tests, benchmarks, src, docs, examples, README,
Makefile, .ci/run, pyproject.toml; never tests/data):

1. imports of a moved module: ``from er_checks import`` -> ``from tests._support.er_checks import``,
   ``import x`` -> ``from tests.<area> import x``; and ``"client_support:FlakyStore"``
   (a module named in a string) -> ``"tests._support.client:FlakyStore"``;
2. ``Path(__file__)`` in a moved file keeps meaning what it meant: ``.parent`` (the tests
   folder) -> ``.parents[1]``, ``.parents[1]``/``.parent.parent`` (the repository) ->
   ``.parents[2]``; ``Path(__file__).with_name("fleet_child.py")`` -> the file's new place;
3. a path naming a moved file: ``tests/test_x.py`` (also in node ids and globs such as
   ``tests/test_ui_*.py``) and ``... / "gevent_run.py"`` joined to the tests folder;
4. code that put ``tests/`` on ``sys.path`` or ``PYTHONPATH`` (benchmarks, the doc tests' child
   processes) puts the repository root there instead: ``tests/http/`` must not shadow ``http``;
5. ruff: ``src = ["src", "tests"]`` -> ``src = ["src", "."]`` (``tests`` is first-party).

Then it runs ``ruff check --fix`` (import order) and ``ruff format`` on tests/ and benchmarks/
when it finds ruff (``--ruff PATH``, beside this Python, or on PATH), and prints what is left
for a person: mentions of old module names in prose, and every ``__file__`` line it did not
rewrite in a moved file.

Running it again is safe: what is in place is not moved, and no rewrite matches its own result.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path("tests")

# The harness: old module name -> name under tests/_support/.
SUPPORT: dict[str, str] = {
    "zk_server": "zk_server",
    "etcd_server": "etcd_server",
    "redis_server": "redis_server",
    "tcpproxy_zk": "tcpproxy_zk",
    "tcpproxy_er": "tcpproxy_er",
    "netfault": "netfault",
    "network_faults": "network_faults",
    "browser": "browser",
    "fleet_backends": "fleet_backends",
    "fleet_child": "fleet_child",
    "gevent_run": "gevent_run",
    "hanoi_sdist": "hanoi_sdist",
    "er_checks": "er_checks",
    "flag_watcher": "flag_watcher",
    "http_support": "http_server",
    "web_support": "web",
    "client_support": "client",
}

# Tests of the project as a whole: they stay at the top.
TOP = {
    "conftest",
    "test_exported_members",
    "test_readme",
    "test_examples",
    "test_smoke",
    "test_docs",
    "test_extras_missing",
    "test_layering",
}

# Tests whose area their name does not give away.
EXPLICIT: dict[str, str] = {
    "test_model": "engine",
    "test_rules": "engine",
    "test_bucketing": "engine",
    "test_evaluate": "engine",
    "test_schema": "engine",
    "test_seeds": "engine",
    "test_aio": "client",
    "test_overrides": "client",
    "test_multiprocess": "client",
    "test_pytest_plugin": "client",
    "test_health": "client",
    "test_admin": "client",
    "test_fault_scenarios": "stores",
    "test_fleet_stores": "stores",
    "test_golden_over_http": "http",
    "test_demo": "cli",
    "test_scan": "cli",
    "test_openfeature": "integrations",
}

# For files the tables do not know: the first prefix that matches places it.
PREFIXES: list[tuple[str, str]] = [
    ("test_store_", "stores"),
    ("test_fleet_", "stores"),
    ("test_fault", "stores"),
    ("test_wrappers", "stores"),
    ("test_client", "client"),
    ("test_follower", "client"),
    ("test_admin", "client"),
    ("test_edits", "client"),
    ("test_scope", "client"),
    ("test_cache", "client"),
    ("test_metrics", "client"),
    ("test_overrides", "client"),
    ("test_aio", "client"),
    ("test_http_", "http"),
    ("test_ui_", "http"),
    ("test_golden_over_http", "http"),
    ("test_tokens", "http"),
    ("test_cli", "cli"),
    ("test_demo", "cli"),
    ("test_scan", "cli"),
    ("test_compat_", "compat"),
    ("test_integrations_", "integrations"),
    ("test_openfeature", "integrations"),
    ("test_model", "engine"),
    ("test_document", "engine"),
    ("test_checks", "engine"),
    ("test_rules", "engine"),
    ("test_bucketing", "engine"),
    ("test_evaluate", "engine"),
    ("test_context", "engine"),
    ("test_decision", "engine"),
    ("test_snapshot", "engine"),
    ("test_schema", "engine"),
    ("test_seeds", "engine"),
]

AREAS = {
    "_support": "The test harness: real servers, fault proxies and helpers (no tests here).",
    "engine": "Tests of the engine: documents, rules, bucketing, evaluation.",
    "client": "Tests of the client side: the client, its follower, overrides, admin, health.",
    "stores": "Tests of the stores: every backend, the conformance suite, network faults.",
    "http": "Tests of the HTTP server: the API, the dashboard, golden cases over HTTP.",
    "cli": "Tests of the command line: commands, demo, scan.",
    "compat": "Tests of the compatibility layers for the seed systems.",
    "integrations": "Tests of the integrations: web frameworks, templates, OpenFeature.",
}
TOP_INIT = "flagstaff's tests, laid out like the package (tools/mirror_tests.py).\n"

# Files and folders whose text may name test files.
TEXT_FILES = ["README.md", "Makefile", ".ci/run", "pyproject.toml"]
TEXT_TREES = [("docs", "*.md"), ("src", "*.py"), ("examples", "*.py"), ("benchmarks", "*.py")]
SKIP = {TESTS / "data", TESTS / "golden"}


@dataclass(frozen=True)
class Place:
    area: str  # "" for the top of tests/
    stem: str

    @property
    def module(self) -> str:
        return ".".join(["tests", *([self.area] if self.area else []), self.stem])

    @property
    def path(self) -> Path:
        return TESTS / self.area / f"{self.stem}.py" if self.area else TESTS / f"{self.stem}.py"


@dataclass
class Report:
    moved: list[tuple[Path, Path, str]] = field(default_factory=list)  # old, new, how placed
    unplaced: list[Path] = field(default_factory=list)
    edits: dict[Path, int] = field(default_factory=dict)
    untracked: list[Path] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)


def place(stem: str) -> tuple[Place, str] | None:
    """Where the top-level module ``stem`` belongs, and by which rule; None: no rule knows it."""
    if stem in TOP:
        return Place("", stem), "top"
    if stem in SUPPORT:
        return Place("_support", SUPPORT[stem]), "table"
    if stem in EXPLICIT:
        return Place(EXPLICIT[stem], stem), "table"
    if not stem.startswith("test_"):
        return Place("_support", stem), "rule: not a test"
    for prefix, area in PREFIXES:
        if stem.startswith(prefix):
            return Place(area, stem), f"rule: {prefix}*"
    return None


def known_places() -> dict[str, Place]:
    """Every old module name the tables place (for imports in files added later)."""
    out = {stem: Place("_support", new) for stem, new in SUPPORT.items()}
    out |= {stem: Place(area, stem) for stem, area in EXPLICIT.items()}
    return out


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], check=False, capture_output=True, text=True)


def move(old: Path, new: Path, dry_run: bool, report: Report) -> None:
    if dry_run:
        return
    new.parent.mkdir(parents=True, exist_ok=True)
    if git("ls-files", "--error-unmatch", str(old)).returncode == 0:
        result = git("mv", str(old), str(new))
        if result.returncode != 0:
            sys.exit(f"git mv {old} {new} failed: {result.stderr.strip()}")
    else:
        os.replace(old, new)
        report.untracked.append(new)


def ensure_packages(areas: set[str], dry_run: bool, report: Report) -> None:
    inits = {TESTS / "__init__.py": TOP_INIT}
    inits |= {TESTS / area / "__init__.py": f'"""{AREAS.get(area, "Tests.")}"""\n' for area in areas}
    inits[TESTS / "__init__.py"] = f'"""{TOP_INIT.strip()}"""\n'
    for path, text in sorted(inits.items()):
        if path.exists():
            continue
        report.created.append(path)
        if not dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            git("add", str(path))


# --------------------------------------------------------------------------- rewrites


def _ancestor(m: int) -> str:
    """The ``Path(__file__)`` suffix for the m-th ancestor (1: the folder the file is in)."""
    return ".parent" if m == 1 else f".parents[{m - 1}]"


_FILE_CHAIN = re.compile(r"Path\(__file__\)(\.resolve\(\))?((?:\.parent(?!s))+|\.parents\[(\d+)\])")
_WITH_NAME = re.compile(r"Path\(__file__\)(\.resolve\(\))?\.with_name\((['\"])(\w+)\.py\2\)")


def rewrite_file_paths(text: str, here: Place, moved: dict[str, Place]) -> tuple[str, int]:
    """Rule 2: ``Path(__file__)`` in a file moved from the top of tests/ to ``here``."""
    depth = 1 if here.area else 0
    count = 0

    def chain(match: re.Match[str]) -> str:
        nonlocal count
        resolve = match.group(1) or ""
        old = int(match.group(3)) + 1 if match.group(3) is not None else match.group(2).count(".parent")
        count += 1
        return f"Path(__file__){resolve}{_ancestor(old + depth)}"

    def with_name(match: re.Match[str]) -> str:
        nonlocal count
        resolve, quote, stem = match.group(1) or "", match.group(2), match.group(3)
        target = moved.get(stem)
        if target is None:
            return match.group(0)
        count += 1
        if target.area == here.area:
            return f"Path(__file__){resolve}.with_name({quote}{target.stem}.py{quote})"
        parts = [*([target.area] if target.area else []), f"{target.stem}.py"]
        joined = " / ".join(f"{quote}{p}{quote}" for p in parts)
        return f"Path(__file__){resolve}{_ancestor(1 + depth)} / {joined}"

    text = _FILE_CHAIN.sub(chain, text)  # first: with_name's result must not be moved again
    text = _WITH_NAME.sub(with_name, text)
    return text, count


def rewrite_text(text: str, places: dict[str, Place], python: bool) -> tuple[str, int]:
    """Rules 1 and 3: imports and path strings naming a moved module (rule 1 for ``python``)."""
    count = 0
    names = "|".join(sorted(map(re.escape, places), key=len, reverse=True))
    if not names:
        return text, 0

    def sub(pattern: str, repl: object, flags: int = 0) -> None:
        nonlocal text, count
        text, n = re.subn(pattern, repl, text, flags=flags)  # type: ignore[call-overload]
        count += n

    if python:
        sub(rf"^(\s*)from ({names}) import ", lambda m: f"{m[1]}from {places[m[2]].module} import ", re.M)

        def plain(m: re.Match[str]) -> str:
            target, alias = places[m[2]], m[3] or m[2]
            package = target.module.rpartition(".")[0]
            named = target.stem if alias == target.stem else f"{target.stem} as {alias}"
            return f"{m[1]}from {package} import {named}"

        sub(rf"^(\s*)import ({names})(?: as (\w+))?\s*$", plain, re.M)
        # A module named in a string, "module:attr" (the store registry's form).
        sub(rf"(['\"])({names}):(\w+)\1", lambda m: f"{m[1]}{places[m[2]].module}:{m[3]}{m[1]}")

        # ``... / "x.py"`` joined to the tests folder (all such joins were, in the flat tree).
        def joined(m: re.Match[str]) -> str:
            target = places[m[3]]
            area = f"{m[2]}{target.area}{m[2]} / " if target.area else ""
            return f"{m[1]}{area}{m[2]}{target.stem}.py{m[2]}"

        # Not after an area already (``/ "stores" / "x.py"``): a second run changes nothing.
        done = "".join(f"(?<!{q}{area}{q} )" for area in AREAS for q in "'\"")
        sub(rf"{done}(/ )(['\"])({names})\.py\2", joined)

    # tests/x.py, tests/x.Name (a dotted reference in prose), tests/x.py::node ids.
    def path(m: re.Match[str]) -> str:
        target = places[m[1]]
        return f"{target.path.with_suffix('').as_posix()}{m[2]}"

    sub(rf"(?<![\w/])tests/({names})(\.py\b|\.(?=[A-Za-z_]))", path)

    # Globs: tests/test_ui_*.py -> tests/http/test_ui_*.py.
    def glob(m: re.Match[str]) -> str:
        for prefix, area in PREFIXES:
            if m[1].startswith(prefix):
                return f"tests/{area}/{m[1]}*"
        return m[0]

    sub(r"(?<![\w/])tests/(test_\w*)\*", glob)
    return text, count


def rewrite_search_path(text: str) -> tuple[str, int]:
    """Rule 4: code that put tests/ on ``sys.path`` or ``PYTHONPATH`` puts the repository root there.

    With tests/ on the path, ``tests/http/`` would shadow the standard library's ``http``.
    """
    count = 0
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if "sys.path" in line or "PYTHONPATH" in line or re.match(r"\s*for \w+ in \(", line):
            lines[i], n = re.subn(r"\b(\w+(?:\.parent)*) / ['\"]tests['\"]", r"\1", line)
            count += n
    return "".join(lines), count


def rewrite_pyproject(text: str) -> tuple[str, int]:
    """Rule 5: ruff's first-party roots."""
    return re.subn(r'^src = \["src", "tests"\]', 'src = ["src", "."]', text, flags=re.M)


def files_to_read() -> list[Path]:
    found = [Path(p) for p in TEXT_FILES if Path(p).is_file()]
    for root, pattern in TEXT_TREES:
        found += sorted(Path(root).rglob(pattern))
    found += [p for p in sorted(TESTS.rglob("*.py")) if not any(p.is_relative_to(s) for s in SKIP)]
    return found


def find_ruff(given: str | None) -> list[str] | None:
    if given:
        return [given]
    beside = Path(sys.executable).with_name("ruff")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    return [found] if found else None


def leftovers(report: Report, moved_now: set[Path], places: dict[str, Place]) -> None:
    """What a person should read: renamed modules still named, and odd ``__file__`` uses."""
    renamed = [old for old, new in SUPPORT.items() if old != new]
    old_name = re.compile(r"\b(" + "|".join(renamed) + r")\b")
    old_import = re.compile(r"^\s*(from|import) (" + "|".join(map(re.escape, places)) + r")\b")
    for path in files_to_read():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if path in moved_now and "__file__" in line and "Path(__file__)" not in line:
                report.left.append(f"{path}:{n}: __file__ not rewritten: {line.strip()}")
            elif ("sys.path" in line or "PYTHONPATH" in line) and '"tests"' in line:
                report.left.append(f"{path}:{n}: tests/ on a search path (shadows http): {line.strip()}")
            elif old_import.match(line) or old_name.search(line):
                report.left.append(f"{path}:{n}: an old module name: {line.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would move; change nothing")
    parser.add_argument("--ruff", help="the ruff to run afterwards (default: beside this Python, or on PATH)")
    args = parser.parse_args(argv)
    if not (TESTS / "conftest.py").is_file() or not Path("pyproject.toml").is_file():
        parser.error("run me from the repository root (tests/conftest.py and pyproject.toml not found)")
    report = Report()

    # 1. Place and move every module at the top of tests/.
    moves: dict[Path, Place] = {}
    for path in sorted(TESTS.glob("*.py")):
        if path.name == "__init__.py":
            continue
        placed = place(path.stem)
        if placed is None:
            report.unplaced.append(path)
            continue
        target, how = placed
        if target.path != path:
            moves[path] = target
            report.moved.append((path, target.path, how))
    for old, target in moves.items():
        move(old, target.path, args.dry_run, report)
    areas = {t.area for t in moves.values() if t.area} | {
        p.parent.name for p in TESTS.glob("*/__init__.py") if p.parent.name in AREAS
    }
    ensure_packages(areas, args.dry_run, report)

    # 2. Rewrite what names them.
    places = known_places() | {old.stem: target for old, target in moves.items()}
    moved_now = {target.path for target in moves.values()}
    if not args.dry_run:
        for path in files_to_read():
            text = original = path.read_text(encoding="utf-8")
            edits = 0
            if path in moved_now:
                here = next(t for t in moves.values() if t.path == path)
                text, n = rewrite_file_paths(text, here, places)
                edits += n
            code = path.suffix == ".py" and path.parts[0] in ("tests", "benchmarks")
            text, n = rewrite_text(text, places, python=code)
            edits += n
            if code:
                text, n = rewrite_search_path(text)
                edits += n
            if path.name == "pyproject.toml":
                text, n = rewrite_pyproject(text)
                edits += n
            if text != original:
                path.write_text(text, encoding="utf-8")
                report.edits[path] = edits

        ruff = find_ruff(args.ruff)
        if ruff is None:
            report.left.append("ruff not found: run `ruff check --fix` and `ruff format` on tests benchmarks")
        else:
            trees = ["tests", "benchmarks"]
            subprocess.run([*ruff, "check", "--fix", "--select", "I", "-q", *trees], check=False)
            subprocess.run([*ruff, "format", "-q", *trees], check=False)
        leftovers(report, moved_now, places)

    # 3. Say what happened.
    verb = "would move" if args.dry_run else "moved"
    print(f"{verb} {len(report.moved)} file(s):")
    for old, new, how in report.moved:
        print(f"  {old} -> {new}  ({how})")
    for path in report.created:
        print(f"  {'would create' if args.dry_run else 'created'} {path}")
    for path in report.untracked:
        print(f"  note: {path} was not tracked by git; moved without git mv")
    if report.edits:
        print(f"rewrote {sum(report.edits.values())} reference(s) in {len(report.edits)} file(s):")
        for path, n in sorted(report.edits.items()):
            print(f"  {path}: {n}")
    if report.unplaced:
        print("UNPLACED (no rule knows them; left at the top of tests/, add a rule):")
        for path in report.unplaced:
            print(f"  {path}")
    if report.left:
        print("left for a person to read (prose naming old modules, __file__ not rewritten):")
        for line in report.left:
            print(f"  {line}")
    if not report.moved and not report.edits and not report.created:
        print("nothing to do: tests/ is already laid out like the package")
    return 1 if report.unplaced else 0


if __name__ == "__main__":
    sys.exit(main())
