"""GET /api/v1/flags/{name}/report: JSON, SVG, and 400/404/501."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.admin import Admin
from flagstaff.http.app import ServerState, create_app
from flagstaff.http.tokens import Permission
from tests._support.browser import browser_fixture, make_dashboard  # noqa: F401 (the browser fixture)
from tests._support.http_server import make_token
from tests.analysis.test_report import write_case

pytestmark = pytest.mark.timeout(60)

DOC = {"experiment": {"experiment_id": 7, "variants": {"control_1": 30, "treatment": 30}}}
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    write_case(tmp_path / "flags.db.events")  # where serve's event store is by default
    app = create_app(f"sqlite:///{tmp_path / 'flags.db'}")
    state: ServerState = app.state.flagstaff
    Admin(state.store).set("exp", DOC)
    Admin(state.store).set("quiet", True)
    yield app
    state.close()


def client_for(app: Starlette, scope: Permission = Permission.READ) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {make_token(app.state.flagstaff, scope)}"})


def test_json(app: Starlette) -> None:
    response = client_for(app).get("/api/v1/flags/exp/report", params={"metric": "signup,revenue"})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["control"] == "control_1"
    assert data["units"] == {"control_1": 3, "treatment": 3, "control_2": 0}
    assert data["excluded_units"] == 1
    assert [m["name"] for m in data["metrics"]] == ["signup", "revenue"]
    signup = {row["variant"]: row for row in data["metrics"][0]["variants"]}
    assert signup["treatment"]["lift"] == pytest.approx(1.0)
    assert signup["control_2"]["units"] == 0
    assert data["srm"]["units"] == [3, 0, 3]  # the flag's order: control_1, control_2, treatment
    assert data["srm"]["weights"] == [30.0, 10.0, 30.0]
    control = client_for(app).get(
        "/api/v1/flags/exp/report", params={"control": "treatment", "metric": "signup"}
    )
    assert control.json()["metrics"][0]["variants"][0]["variant"] == "treatment"


def test_svg_plots(app: Starlette) -> None:
    client = client_for(app)
    response = client.get("/api/v1/flags/exp/report", params={"format": "svg", "metric": "signup"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.text)
    intervals = [g for g in root.iter(f"{SVG}g") if "interval" in (g.get("class") or "").split()]
    assert len(intervals) == 2  # treatment and control_2
    counts = client.get("/api/v1/flags/exp/report", params={"format": "svg", "plot": "counts"})
    assert counts.status_code == 200
    root = ET.fromstring(counts.text)
    assert len([p for p in root.iter(f"{SVG}polyline") if "series" in (p.get("class") or "")]) == 3


def test_errors(app: Starlette, tmp_path: Path) -> None:
    client = client_for(app)
    assert client.get("/api/v1/flags/missing/report").status_code == 404
    quiet = client.get("/api/v1/flags/quiet/report")
    assert quiet.status_code == 404 and "no exposures" in quiet.json()["error"]
    assert client.get("/api/v1/flags/exp/report", params={"control": "nope"}).status_code == 400
    assert client.get("/api/v1/flags/exp/report", params={"format": "png"}).status_code == 400
    assert client.get("/api/v1/flags/exp/report", params={"plot": "pie"}).status_code == 400
    assert client.get("/api/v1/flags/exp/report", params={"bogus": "1"}).status_code == 400
    assert TestClient(app).get("/api/v1/flags/exp/report").status_code == 401


def test_no_event_store_is_501() -> None:
    app = create_app("memory://report-501")
    try:
        Admin(app.state.flagstaff.store).set("exp", DOC)
        response = client_for(app).get("/api/v1/flags/exp/report")
        assert response.status_code == 501
        assert "event store" in json.loads(response.text)["error"]
    finally:
        app.state.flagstaff.close()


def test_openapi_lists_the_route(app: Starlette) -> None:
    doc = client_for(app).get("/api/v1/openapi.json").json()
    assert doc["paths"]["/api/v1/flags/{name}/report"]["get"]["operationId"] == "flagReport"


# --------------------------------------------------------------------------- dashboard

HOSTILE = '<script>alert("x")</script>'


def _hostile_event(path: Path) -> None:
    from flagstaff.exposures import Event, EventKind, SQLiteSink
    from tests.analysis.test_report import T0

    sink = SQLiteSink(path)
    sink.write([Event(EventKind.TRACK, T0 + 500, "u4", name=HOSTILE)])
    sink.close()


def test_flag_page_results_html_is_escaped(app: Starlette, tmp_path: Path) -> None:
    _hostile_event(tmp_path / "flags.db.events")
    client = client_for(app)
    page = client.get("/flags/exp", headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text
    html = page.text
    assert 'id="results-panel"' in html and 'id="results-counts"' in html
    assert HOSTILE not in html  # the metric's name, in the table and in the SVG title
    assert "&lt;script&gt;" in html
    assert html.count('class="results-metric"') == 3  # the hostile one, revenue, signup
    quiet = client.get("/flags/quiet", headers={"Accept": "text/html"}).text
    assert 'id="results-panel"' not in quiet  # no experiment: no section


def test_flag_page_without_exposures_says_why(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'flags.db'}")
    try:
        Admin(app.state.flagstaff.store).set("exp", DOC)
        html = client_for(app).get("/flags/exp", headers={"Accept": "text/html"}).text
        assert 'id="results-none"' in html and "nothing recorded yet" in html
    finally:
        app.state.flagstaff.close()


def test_results_render_in_the_browser(browser: WebDriver, tmp_path: Path) -> None:
    write_case(tmp_path / "flags.db.events")  # beside the dashboard's store: serve's default
    for dashboard in make_dashboard(browser, tmp_path):
        Admin(dashboard.state.store).set(
            "exp", {"experiment": {"experiment_id": 7, "variants": {"treatment": 30}}}
        )
        dashboard.login()
        dashboard.open("/flags/exp")
        panel = dashboard.wait(lambda d: d.find_element(By.ID, "results-panel"))
        signup = panel.find_element(By.CSS_SELECTOR, '.results-metric[data-metric="signup"]')
        intervals = signup.find_elements(By.CSS_SELECTOR, "svg g.interval")
        assert len(intervals) == 2  # one per treatment: control_2 and treatment against control_1
        assert all(g.is_displayed() and g.size["width"] > 0 for g in intervals)
        bars = signup.find_elements(By.CSS_SELECTOR, "svg")
        assert bars[0].size["height"] > 0
        counts = panel.find_element(By.CSS_SELECTOR, "#results-counts svg")
        assert len(counts.find_elements(By.CSS_SELECTOR, "polyline.series")) == 3
        rows = [r.text for r in signup.find_elements(By.CSS_SELECTOR, "table.results tbody tr")]
        assert rows[0].startswith("control_1 3") and "control" in rows[0]
        assert any(r.startswith("treatment 3 0.6667 +100.00%") for r in rows)
