"""flagstaff report: the table, --json, --plot, the default event store, and the errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flagstaff.cli import EXIT, main
from flagstaff.cli.report import default_events
from flagstaff.http.state import default_events_db
from tests.analysis.test_report import write_case

DOC = json.dumps({"experiment": {"experiment_id": 7, "variants": {"control_1": 30, "treatment": 30}}})


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        self.capsys = capsys
        self.url = f"sqlite:///{tmp_path / 'flagstaff.db'}"
        self.events = write_case(tmp_path / "flagstaff.db.events")
        self.out = self.err = ""

    def __call__(self, *argv: str) -> int:
        code = main(["--store", self.url, "--author", "tester@host", *argv])
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return code


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    run = Run(capsys, tmp_path)
    assert run("set", "exp", DOC) == EXIT.OK
    return run


def test_table_uses_the_default_event_store_beside_the_store(cli: Run) -> None:
    assert cli("report", "exp") == EXIT.OK, cli.err
    assert "metric signup (binomial)" in cli.out
    assert "metric revenue (mean)" in cli.out
    lines = [line.split() for line in cli.out.splitlines()]
    treatment = [cells for cells in lines if cells[:1] == ["treatment"]]
    assert treatment[1][:4] == ["treatment", "3", "0.6667", "+100.00%"]  # signup after revenue
    # the SRM check reads the flag's weights, control_2 (never exposed) included
    assert "units 3, 0, 3" in cli.out
    assert "1 units saw more than one variant and are excluded" in cli.out


def test_json_metric_and_control(cli: Run) -> None:
    assert cli("--json", "report", "exp", "--metric", "revenue", "--control", "treatment") == EXIT.OK, cli.err
    data = json.loads(cli.out)
    assert data["control"] == "treatment"
    assert data["units"] == {"treatment": 3, "control_1": 3, "control_2": 0}
    assert data["excluded_units"] == 1
    (metric,) = data["metrics"]
    assert metric["name"] == "revenue" and metric["kind"] == "mean"
    assert metric["variants"][0] == {"variant": "treatment", "units": 3, "value": pytest.approx(20 / 3)}
    assert metric["variants"][1]["lift"] == pytest.approx(5 / (20 / 3) - 1)
    assert data["srm"]["weights"] == [30.0, 30.0, 10.0]  # treatment, control_1, control_2 (as parsed)


def test_plot_writes_a_parseable_svg(cli: Run, tmp_path: Path) -> None:
    target = tmp_path / "out.svg"
    assert cli("report", "exp", "--metric", "signup", "--plot", str(target)) == EXIT.OK, cli.err
    root = ET.fromstring(target.read_text())
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    groups = [g for g in root.iter(f"{ns}g") if "interval" in (g.get("class") or "").split()]
    assert len(groups) == 2  # control_2 and treatment against control_1
    assert len([p for p in root.iter(f"{ns}polyline") if "series" in (p.get("class") or "")]) == 3


def test_png_without_matplotlib_is_a_clear_error(cli: Run, tmp_path: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        assert cli("report", "exp", "--plot", str(tmp_path / "out.png")) == EXIT.USAGE
        assert "matplotlib" in cli.err
    else:
        assert cli("report", "exp", "--plot", str(tmp_path / "out.png")) == EXIT.OK
        assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"


def test_errors(cli: Run, tmp_path: Path) -> None:
    assert cli("set", "quiet", "on") == EXIT.OK
    assert cli("report", "quiet") == EXIT.NO
    assert "no exposures of 'quiet'" in cli.err
    assert cli("report", "missing") == EXIT.NOT_FOUND
    assert cli("report", "exp", "--events", str(tmp_path / "nowhere.db")) == EXIT.NO
    assert cli("report", "exp", "--control", "nope") == EXIT.USAGE
    assert "control 'nope'" in cli.err
    assert main(["--store", "memory://x", "report", "exp"]) == EXIT.USAGE


def test_default_events_is_serves_rule() -> None:
    for url in ("sqlite:///a/b.db", "sqlite:////abs/b.db", "sqlite://", "sqlite:///:memory:", "memory://x"):
        assert default_events(url) == default_events_db(url)
