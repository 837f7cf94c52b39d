"""``flagstaff scan``: a sample project with known answers, a store with history, and our own examples."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from flagstaff.admin import Admin
from flagstaff.cli import EXIT, main
from flagstaff.cli.scan import find_references, find_template_references, parse_created
from flagstaff.stores import open_store

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "tests" / "data" / "scan_project"
EXAMPLES = REPO / "examples"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["scan", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def scan_json(*argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(*argv, "--json")
    assert out, err
    return code, json.loads(out)


def by_category(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for finding in report["findings"]:
        groups.setdefault(finding["category"], []).append(finding)
    return groups


def test_find_references_recognises_the_seed_call_styles() -> None:
    source = (
        "import flagstaff\n"
        "NAME = 'const_flag'\n"
        "client.is_enabled('a', ctx)\n"
        "request.flags.variant('b')\n"
        "feature.is_enabled('c', user=u)\n"
        "self.app.rollout.is_d(user)\n"
        "rollout.is_enabled('e', user)\n"
        "scope.evaluate('f')\n"
        "client.wait_for_change('g', 1.0)\n"
        "is_enabled('h')\n"
        "client.is_enabled(NAME)\n"
        "client.is_enabled(flag='i')\n"
        "client.is_enabled(name)\n"
        "client.is_enabled('x' + suffix)\n"
        "other.is_d(user)\n"  # not the rollout receiver
        "evaluate(flag, ctx)\n"  # flagstaff.evaluate takes a Flag
        "obj.is_valid('nope')\n"
        "'client.is_enabled(\"in_text\")'\n"
    )
    refs = find_references(source, "m.py")
    assert [r.flag for r in refs] == ["a", "b", "c", "d", "e", "f", "g", "h", "const_flag", "i", None, None]
    assert (refs[0].file, refs[0].line, refs[0].column, refs[0].call) == (
        "m.py",
        3,
        1,
        "client.is_enabled('a', ctx)",
    )
    assert refs[3].call == "self.app.rollout.is_d(user)"
    with pytest.raises(SyntaxError):
        find_references("def (:\n", "bad.py")


def test_find_references_sees_hanoi_decorators() -> None:
    source = (
        "from app import rollout\n"
        "@rollout.check('checked')\n"
        "def a(): ...\n"
        "@rollout.check('by_arg', 1)\n"
        "def b(user): ...\n"
        "@rollout.enabled('gated')\n"
        "def c(): ...\n"
        "@self.app.rollout.enabled(flag='kw')\n"
        "def d(): ...\n"
        "@rollout.enabled(NAME)\n"
        "def e(): ...\n"
        "@other.check('not_a_flag')\n"  # another receiver's check() is not hanoi's
        "def f(): ...\n"
        "rollout.enable('admin_call')\n"  # enable() changes a flag; it does not read it
    )
    refs = find_references(source, "h.py")
    assert [(r.flag, r.line) for r in refs] == [
        ("checked", 2),
        ("by_arg", 4),
        ("gated", 6),
        ("kw", 8),
        (None, 10),
    ]
    assert refs[0].call == "rollout.check('checked')"


def test_template_references() -> None:
    text = "<p>\n{% if flags.is_enabled(\"t1\") %}x{% endif %} ${feature.variant('t2')} is_enabled(name)\n"
    refs = find_template_references(text, "t.html")
    assert [(r.flag, r.line, r.column) for r in refs] == [("t1", 2, 13), ("t2", 2, 55)]


def test_parse_created() -> None:
    assert parse_created("2020-01-15") == 1579046400.0
    assert parse_created("2021-06-01T12:00:00+02:00") == 1622541600.0
    assert parse_created("last spring") is None
    assert parse_created(None) is None


def test_sample_project_known_answers() -> None:
    code, report = scan_json(str(PROJECT), "--flags", str(PROJECT / "flags.json"))
    assert code == EXIT.NO
    assert report["files"] == 4  # views.py, __init__.py, broken.py, home.html; build/ skipped
    assert report["defined"] == 9
    groups = by_category(report)
    assert sorted(groups) == ["dynamic", "stale", "undefined", "unparsed", "unused"]
    undefined = {f["flag"]: [(w["file"], w["line"]) for w in f["where"]] for f in groups["undefined"]}
    assert undefined == {"ghost_flag": [("app/views.py", 17)], "typo_flag": [("app/views.py", 21)]}
    assert [f["flag"] for f in groups["unused"]] == ["legacy_banner", "old_flow"]
    assert [(f["where"][0]["line"], f["where"][0]["call"]) for f in groups["dynamic"]] == [
        (18, "client.evaluate(f'exp_{name}')"),
        (19, "client.is_enabled(name=some_var)"),
        (23, "client.variant(PREFIX)"),
    ]
    stale = {f["flag"]: (f["since"], f["owner"]) for f in groups["stale"]}
    assert stale == {"new_checkout": ("2020-01-15", "team-pay"), "old_flow": ("2021-06-01", "team-web")}
    assert groups["unparsed"][0]["message"].startswith("app/broken.py:1: not valid Python")
    referenced = {r["flag"] for r in report["references"]}
    assert referenced == {
        "new_checkout",
        "ranker",
        "inbox_v2",
        "fast_search",
        "dark_mode",
        "ghost_flag",
        "typo_flag",
        "beta_tools",
        "search_v2",
        None,
    }
    templates = [r for r in report["references"] if r["file"].endswith(".html")]
    assert [(r["flag"], r["line"]) for r in templates] == [("search_v2", 2), ("search_v2", 3)]


def test_sample_project_human_output() -> None:
    code, out, _ = run(str(PROJECT), "--flags", str(PROJECT / "flags.json"))
    assert code == EXIT.NO
    assert out.startswith("scanned 4 files: 14 references to 9 flags; 9 flags defined in ")
    assert (
        "referenced but not defined (2):\n  app/views.py:17:5  ghost_flag\n  app/views.py:21:5  typo_flag\n"
        in out
    )
    assert "defined but referenced nowhere (2):\n  legacy_banner\n  old_flow\n" in out
    assert "  app/views.py:23:5  client.variant(PREFIX)\n" in out
    assert "temporary flags older than 90 days (2):\n  'new_checkout' is temporary and" in out


def test_max_age_ignore_and_exclude() -> None:
    flags = str(PROJECT / "flags.json")
    _, report = scan_json(str(PROJECT), "--flags", flags, "--max-age", "100000")
    assert "stale" not in by_category(report)
    ignore = ["--ignore", "undefined", "--ignore", "unused", "--ignore", "dynamic", "--ignore", "stale"]
    code, report = scan_json(str(PROJECT), "--flags", flags, *ignore, "--exclude", "broken.py")
    assert (code, report["findings"], report["files"]) == (EXIT.OK, [], 3)
    code, out, _ = run(
        str(PROJECT / "app" / "templates"), "--flags", flags, "--ignore", "unused", "--ignore", "stale"
    )
    assert (code, out.splitlines()[-1]) == (EXIT.OK, "no findings")


def test_without_definitions_only_code_findings() -> None:
    code, report = scan_json(str(PROJECT / "app" / "views.py"))
    assert code == EXIT.NO
    assert report["defined"] is None
    assert sorted(by_category(report)) == ["dynamic"]
    assert report["references"][0]["file"].endswith("app/views.py")


def test_usage_errors() -> None:
    code, _, err = run(str(PROJECT / "missing"))
    assert code == EXIT.USAGE and "no such file or directory" in err
    code, _, err = run(str(PROJECT), "--flags", str(PROJECT / "nope.json"))
    assert code == EXIT.USAGE and "cannot read" in err
    code, _, _ = run(str(PROJECT), "--ignore", "everything")
    assert code == EXIT.USAGE


def test_against_a_store_with_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flags.db'}"
    store = open_store(url)
    try:
        admin = Admin(store, author="test")
        admin.set("beta_tools", {"kind": "temporary", "groups": ["beta"]})  # age from history: seconds
        admin.set("new_checkout", {"kind": "temporary", "created": "2020-01-15", "percentage": 5})
        admin.set("dark_mode", "on")
    finally:
        store.close()
    time.sleep(0.05)
    code, report = scan_json(str(PROJECT / "app"), "--store", url)  # --store stands in for --flags
    groups = by_category(report)
    assert code == EXIT.NO
    assert [f["flag"] for f in groups["stale"]] == ["new_checkout"]
    assert {f["flag"] for f in groups["undefined"]} == {
        "ghost_flag",
        "typo_flag",
        "ranker",
        "inbox_v2",
        "fast_search",
        "search_v2",
    }
    assert "unused" not in groups
    _, report = scan_json(str(PROJECT / "app"), "--flags", url, "--max-age", "0")
    stale = {f["flag"]: f["age_days"] for f in by_category(report)["stale"]}
    assert set(stale) == {"beta_tools", "new_checkout"}
    assert stale["beta_tools"] < 0.01 < stale["new_checkout"]


def test_store_unavailable_exit_code(tmp_path: Path) -> None:
    (tmp_path / "flags.db").mkdir()
    code, _, _ = run(str(PROJECT), "--flags", f"sqlite:///{tmp_path / 'flags.db'}")
    assert code == EXIT.UNAVAILABLE


# The example scripts as they stand; one added later may reference more flags (see below).
KNOWN_EXAMPLES = {
    "admin_writes.py",
    "evaluate_a_flag.py",
    "experiment_split.py",
    "local_overrides.py",
    "schedule_at_midnight.py",
}


def test_flagstaffs_own_examples() -> None:
    code, report = scan_json(str(EXAMPLES), "--flags", str(EXAMPLES / "flags.json"))
    groups = by_category(report)
    # Every flag an example evaluates through a client is in flags.json, by a literal name.
    assert {"undefined", "dynamic", "unparsed", "stale"}.isdisjoint(groups)
    known = [r for r in report["references"] if r["file"] in KNOWN_EXAMPLES]
    assert [(r["file"], r["flag"]) for r in known] == [
        ("local_overrides.py", "new_checkout"),
        ("local_overrides.py", "search_ranker"),
        ("local_overrides.py", "dark_mode"),
    ]
    # The other examples evaluate parsed flags directly (flagstaff.evaluate), so these flags of
    # flags.json are used by no client call: the real "unused" answer, less any flag that an
    # example added since references.
    later = {r["flag"] for r in report["references"] if r["file"] not in KNOWN_EXAMPLES}
    unused_now = {
        "beta_dashboard",
        "checkout_button",
        "inbox_v2",
        "legacy_search",
        "new_year_banner",
        "old_onboarding",
        "pro_reports",
    }
    assert {f["flag"] for f in groups.get("unused", [])} == unused_now - later
    assert code == (EXIT.NO if unused_now - later else EXIT.OK)


def test_old_import_path_still_works() -> None:
    # The scan moved into the CLI package (flagstaff.cli.scan); `flagstaff.scan` re-exports it.
    from flagstaff import scan as old
    from flagstaff.cli import scan as new

    for name in old.__all__:
        assert getattr(old, name) is getattr(new, name), name
