"""GET /api/v1/flags/{name}/report: the Query parameters, and the report cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette

from flagstaff.exposures import SQLiteSink
from flagstaff.http.api.report import report_cache
from tests.analysis.test_report import T0, _t
from tests.http.test_http_report import app as _app
from tests.http.test_http_report import client_for

app = pytest.fixture(_app.__wrapped__)  # type: ignore[attr-defined]  # the same app, as a fixture here

pytestmark = pytest.mark.timeout(60)

URL = "/api/v1/flags/exp/report"


def test_query_parameters(app: Starlette) -> None:
    client = client_for(app)
    data = client.get(URL, params={"metric": "revenue", "until": str(T0 + 155), "experiment_id": "7"}).json()
    assert data["units"] == {"control_1": 3, "treatment": 2, "control_2": 0}
    assert client.get(URL, params={"since": "2026-01-02T00:00"}).json()["units"]["treatment"] == 1
    cuped = client.get(URL, params={"metric": "revenue", "cuped_days": "1"}).json()
    assert cuped["metrics"][0]["variants"][2]["cuped"] is True
    ratio = client.get(URL, params={"metric": "revenue/signup"}).json()
    assert ratio["metrics"][0]["kind"] == "ratio"
    assert client.get(URL, params={"experiment_id": "99"}).status_code == 404
    for bad in ({"experiment_id": "x"}, {"since": "soon"}, {"cuped_days": "0"}, {"cuped_days": "many"}):
        response = client.get(URL, params=bad)
        assert response.status_code == 400, bad
        assert next(iter(bad)) in response.json()["error"]


def test_repeated_reports_come_from_the_cache_until_an_event_lands(app: Starlette, tmp_path: Path) -> None:
    client = client_for(app)
    cache = report_cache()
    first = client.get(URL, params={"metric": "revenue"}).json()
    hits, misses = cache.hits, cache.misses
    assert client.get(URL, params={"metric": "revenue"}).json() == first
    assert (cache.hits, cache.misses) == (hits + 1, misses)
    # The dashboard's flag page (every metric: another query) computes once, then hits too.
    for _ in range(2):
        page = client.get("/flags/exp", headers={"Accept": "text/html"})
        assert page.status_code == 200 and 'id="results-panel"' in page.text
    assert (cache.hits, cache.misses) == (hits + 2, misses + 1)
    sink = SQLiteSink(tmp_path / "flags.db.events")
    sink.write([_t(500, "u3", "revenue", 30.0)])
    sink.close()
    fresh = client.get(URL, params={"metric": "revenue"}).json()
    assert (cache.hits, cache.misses) == (hits + 2, misses + 2)
    assert first["metrics"][0]["variants"][0]["value"] == pytest.approx(15 / 3)
    assert fresh["metrics"][0]["variants"][0]["value"] == pytest.approx(45 / 3)
