"""POST /api/v1/ingest with ``usage`` events: validated, added up per flag and hour in the
server's event store. (A real recorder posting usage to a real server over loopback, and
the dashboard column it fills, are in tests/http/test_ui_usage.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.http.app import create_app
from flagstaff.http.tokens import Permission
from flagstaff.usage import HOUR
from tests._support.http_server import make_token

pytestmark = pytest.mark.timeout(60)

T0 = 1_800_000_000 - 1_800_000_000 % HOUR


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "flags.db"


@pytest.fixture
def app(db: Path) -> Iterator[Starlette]:
    app = create_app(f"sqlite:///{db}")
    yield app
    app.state.flagstaff.close()


def post(app: Starlette, events: list[dict[str, Any]]) -> Any:
    token = make_token(app.state.flagstaff, Permission.WRITE)
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    return client.post("/api/v1/ingest", json={"events": events})


def usage_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"{db}.events") as conn:
        return conn.execute(
            "SELECT flag, hour, count, last_seen FROM flagstaff_usage ORDER BY flag, hour"
        ).fetchall()


def test_usage_from_two_processes_adds_up(app: Starlette, db: Path) -> None:
    first = [{"kind": "usage", "time": T0 + 5, "flag": "a", "value": 10}]
    second = [
        {"kind": "usage", "time": T0 + 9, "flag": "a", "value": 3},
        {"kind": "usage", "time": T0 + HOUR, "flag": "a", "value": 1},
        {"kind": "usage", "time": T0 + 7, "flag": "b", "value": 2},
    ]
    assert post(app, first).json() == {"written": 1}
    assert post(app, second).json() == {"written": 3}
    assert usage_rows(db) == [("a", T0, 13, T0 + 9.0), ("a", T0 + HOUR, 1, T0 + HOUR), ("b", T0, 2, T0 + 7.0)]


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ({"kind": "usage", "time": T0, "value": 1}, "events[0].flag"),
        ({"kind": "usage", "time": T0, "flag": "a"}, "events[0].value"),
        ({"kind": "usage", "time": T0, "flag": "a", "value": -2}, "events[0].value"),
        ({"kind": "usage", "time": T0, "flag": "a", "value": 2.5}, "events[0].value"),
        ({"kind": "used", "time": T0, "flag": "a", "value": 2}, "events[0].kind"),
    ],
)
def test_bad_usage_is_400_and_nothing_is_written(
    app: Starlette, db: Path, event: dict[str, Any], path: str
) -> None:
    good = {"kind": "usage", "time": T0, "flag": "ok", "value": 1}
    response = post(app, [event, good])
    assert response.status_code == 400, response.text
    assert response.json()["problems"][0]["path"] == path
    assert not Path(f"{db}.events").exists() or usage_rows(db) == []
