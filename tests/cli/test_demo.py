"""``flagstaff demo``: the example flags load, and the decisions are the documented ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from flagstaff.cli import main
from flagstaff.cli.demo import DEMO_USERS, cell, decide_all
from flagstaff.model import parse_flag

REPO = Path(__file__).resolve().parents[2]
FLAGS = json.loads((REPO / "examples" / "flags.json").read_text())
NOW = 1_800_000_000.0  # 2027-01-15: after the new-year banner starts


def test_examples_show_every_flag_shape() -> None:
    flags = {name: parse_flag(name, doc) for name, doc in FLAGS.items()}
    assert FLAGS["dark_mode"] == "on" and FLAGS["legacy_search"] == "off"
    assert any(isinstance(doc, int | float) for doc in FLAGS.values())  # bare percentage
    selectors = {s for f in flags.values() for s in f.selectors}
    assert {"users", "groups", "admin", "employee", "subreddits", "url", "regex", "rules"} <= selectors
    assert any(f.schedule is not None for f in flags.values())
    assert any(f.experiment is not None for f in flags.values())
    assert any(f.variants for f in flags.values())
    assert any(f.mode.value == "hanoi" for f in flags.values())


def test_demo_decisions() -> None:
    got = {(f, u): d for f, u, d in decide_all(FLAGS, DEMO_USERS, NOW)}
    assert len(got) == len(FLAGS) * len(DEMO_USERS)
    assert all(got["dark_mode", u].enabled for u in DEMO_USERS)
    assert not any(got["old_onboarding", u].enabled for u in DEMO_USERS)
    assert got["beta_dashboard", "alice"].rule == "users"
    assert got["beta_dashboard", "carol"].rule == "groups"
    assert got["inbox_v2", "alice"].rule == "employee"
    assert got["inbox_v2", "visitor"].rule == "url"
    assert got["search_ranker", "qa-7"].rule == "regex"
    assert got["search_ranker", "qa-7"].variant in ("bm25", "neural")
    assert got["pro_reports", "bob"].rule == "rules[0]"
    assert not got["pro_reports", "qa-7"].enabled  # free plan
    assert got["new_year_banner", "bob"].enabled
    before = {(f, u): d for f, u, d in decide_all(FLAGS, DEMO_USERS, NOW - 86400 * 365)}
    assert before["new_year_banner", "bob"].reason.value == "schedule"
    assert got["checkout_button", "visitor"].reason.value == "default"  # not logged in: not eligible


def test_cell() -> None:
    cells = {
        (f, u): cell(d, killable=isinstance(FLAGS[f], dict)) for f, u, d in decide_all(FLAGS, DEMO_USERS, NOW)
    }
    assert cells["dark_mode", "bob"] == "on"
    assert cells["legacy_search", "bob"] == "off"
    assert cells["old_onboarding", "bob"] == "off (kill switch)"
    assert cells["inbox_v2", "visitor"] == "on (url)"
    assert cells["checkout_button", "qa-7"] == "off (excluded)"
    assert cells["search_ranker", "qa-7"] in ("bm25 (regex)", "neural (regex)")


def test_demo_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"memory://demo-{uuid.uuid4().hex}"
    assert main(["--store", url, "--json", "demo"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data["import"]["created"]) == sorted(FLAGS)
    assert len(data["decisions"]) == len(FLAGS) * len(DEMO_USERS)
    # running it again changes nothing in the store
    assert main(["--store", url, "--json", "demo"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert sorted(again["import"]["unchanged"]) == sorted(FLAGS)
    assert again["decisions"] == data["decisions"]


def test_demo_from_a_fresh_directory(tmp_path: Path) -> None:
    """What `make run` does, from another working directory: a table with reasons."""
    proc = subprocess.run(
        [sys.executable, "-m", "flagstaff", "demo", "--flags", str(REPO / "examples" / "flags.json")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "FLAGSTAFF_STORE": ""},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("FLAG"))
    assert lines[header].split() == ["FLAG", *(u.upper() for u in DEMO_USERS)]
    table = {row.split()[0]: row for row in lines[header + 1 : header + 1 + len(FLAGS)]}
    assert set(table) == set(FLAGS)
    assert table["beta_dashboard"].split()[1:3] == ["on", "(users)"]
    assert table["old_onboarding"].count("off (kill switch)") == len(DEMO_USERS)
    assert f"Loaded {len(FLAGS)} example flags" in proc.stdout
    assert (tmp_path / "flagstaff.db").exists()  # the SQLite default, in the working directory
    assert "-m flagstaff check new_checkout --user bob" in proc.stdout


def test_demo_missing_flags_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store", "memory://", "demo", "--flags", str(tmp_path / "nope.json")]) == 2
    assert "cannot find the example flags at" in capsys.readouterr().err


REPO = Path(__file__).resolve().parents[2]


def test_the_packaged_example_flags_are_the_examples() -> None:
    from importlib import resources

    packaged = resources.files("flagstaff").joinpath("data", "flags.json")
    assert json.loads(packaged.read_text()) == json.loads((REPO / "examples" / "flags.json").read_text())


def test_demo_from_a_built_package_without_the_source_tree(tmp_path: Path) -> None:
    # What a wheel holds is what setuptools' build_py lays out: build it, then run the demo
    # from that tree alone, in a directory with no examples/ (it used to look for
    # <site-packages>/../examples/flags.json and fail).
    build = tmp_path / "lib"
    setup = "from setuptools import setup; setup()"
    built = subprocess.run(
        [sys.executable, "-c", setup, "-q", "build_py", "--build-lib", str(build)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    data = build / "flagstaff" / "data" / "flags.json"
    assert data.is_file() and not data.is_symlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}, "PYTHONPATH": str(build)}
    proc = subprocess.run(
        [sys.executable, "-m", "flagstaff", "--store", "memory://", "demo"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"from {data}" in proc.stdout


def test_old_import_path_still_works() -> None:
    # The demo moved into the CLI package (flagstaff.cli.demo); `flagstaff.demo` re-exports it.
    from flagstaff import demo as old
    from flagstaff.cli import demo as new

    for name in old.__all__:
        assert getattr(old, name) is getattr(new, name), name
