"""flagstaff report: --experiment-id, --since/--until, --cuped-days, ratio metrics, PNG plots."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from flagstaff.cli import EXIT
from tests.analysis.test_report import T0
from tests.cli.test_cli_report import DOC, Run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    run = Run(capsys, tmp_path)
    assert run("set", "exp", DOC) == EXIT.OK
    return run


def _json(run: Run, *argv: str) -> dict[str, object]:
    assert run("--json", "report", "exp", *argv) == EXIT.OK, run.err
    data: dict[str, object] = json.loads(run.out)
    return data


def test_window_experiment_id_cuped_and_ratio(cli: Run) -> None:
    data = _json(cli, "--metric", "revenue", "--until", str(T0 + 155), "--experiment-id", "7")
    assert data["units"] == {"control_1": 3, "treatment": 2, "control_2": 0}
    assert _json(cli, "--since", "2026-01-02")["units"] == {"control_1": 0, "treatment": 1, "control_2": 0}
    cuped = _json(cli, "--metric", "revenue", "--cuped-days", "1")
    rows = {row["variant"]: row.get("cuped") for row in cuped["metrics"][0]["variants"]}  # type: ignore[index]
    assert rows["control_1"] is None and rows["treatment"] is True  # the control has no comparison
    ratio = _json(cli, "--metric", "revenue/signup")
    metric = ratio["metrics"][0]  # type: ignore[index]
    assert metric["kind"] == "ratio" and metric["variants"][0]["value"] == pytest.approx(15.0)


def test_bad_options_are_usage_errors(cli: Run) -> None:
    assert cli("report", "exp", "--since", "yesterday") == EXIT.USAGE
    assert "--since: not a time" in cli.err
    assert cli("report", "exp", "--since", "2026-02-01", "--until", "2026-01-01") == EXIT.USAGE
    assert "since must be before until" in cli.err
    assert cli("report", "exp", "--cuped-days", "-1") == EXIT.USAGE
    assert cli("report", "exp", "--experiment-id", "99") == EXIT.NO


def test_png_plot(cli: Run, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "out.png"
    assert cli("report", "exp", "--metric", "signup", "--plot", str(target)) == EXIT.OK, cli.err
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (700, 200 + 160 * 2)  # one metric, then the counts


def test_png_without_matplotlib_says_which_extra(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert cli("report", "exp", "--plot", str(tmp_path / "out.png")) == EXIT.USAGE
    assert "flagstaff[plots]" in cli.err and not (tmp_path / "out.png").exists()
