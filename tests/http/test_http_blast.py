"""POST /api/v1/flags/{name}/blast: the count, the scope, and the errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.context import Context
from flagstaff.evaluate import evaluate
from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.http.app import ServerState, Settings, create_app
from flagstaff.http.openapi import document as openapi_document
from flagstaff.http.tokens import Permission
from flagstaff.model import parse_flag
from flagstaff.testing import wait_until
from tests._support.http_server import make_token

pytestmark = pytest.mark.timeout(60)

KEYS = [f"user-{i}" for i in range(1000)]
URL = "/api/v1/flags/checkout/blast"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "flags.db"


@pytest.fixture
def app(db: Path) -> Iterator[Starlette]:
    app = create_app(f"sqlite:///{db}")
    yield app
    app.state.flagstaff.close()


def client_for(app: Starlette, scope: Permission) -> TestClient:
    state: ServerState = app.state.flagstaff
    return TestClient(app, headers={"Authorization": f"Bearer {make_token(state, scope)}"})


def record(db: Path) -> None:
    now = time.time()
    sink = SQLiteSink(f"{db}.events")
    sink.write([Event(EventKind.EXPOSURE, now - 3600, key, "checkout") for key in KEYS])
    sink.write([Event(EventKind.TRACK, now - 20 * 86_400, f"old-{i}", name="buy") for i in range(30)])
    sink.close()


@pytest.fixture
def writer(app: Starlette, db: Path) -> TestClient:
    client = client_for(app, Permission.WRITE)
    assert client.put("/api/v1/flags/checkout", json={"document": {"percentage": 10}}).status_code == 201
    state: ServerState = app.state.flagstaff
    wait_until(lambda: state.client.snapshot.get("checkout") is not None)
    return client


def was_in() -> int:
    ten = parse_flag("checkout", {"percentage": 10})
    return sum(evaluate(ten, Context(user_id=key)).enabled for key in KEYS)


def test_blast_counts_and_writes_nothing(writer: TestClient, db: Path) -> None:
    record(db)
    response = writer.post(URL, json={"document": {"percentage": 0}})
    assert response.status_code == 200, response.text
    data = response.json()
    n = was_in()
    assert data["flag"] == "checkout" and data["days"] == 7
    assert data["units"] == 1000 and data["changed"] == data["on_to_off"] == n
    assert data["transitions"] == [{"from": "on", "to": "off", "units": n}]
    assert writer.get("/api/v1/flags/checkout").json()["document"] == {"percentage": 10}
    wider = writer.post(URL, json={"document": "on", "days": 30}).json()
    assert wider["units"] == 1030 and wider["off_to_on"] == wider["changed"]


def test_no_events_yet_is_nobody(writer: TestClient, db: Path) -> None:
    response = writer.post(URL, json={"document": "off"})
    assert response.status_code == 200, response.text
    assert response.json()["units"] == 0
    assert not Path(f"{db}.events").exists()  # a preview creates no event store


def test_errors(app: Starlette, writer: TestClient, db: Path) -> None:
    record(db)
    missing = writer.post("/api/v1/flags/nope/blast", json={"document": "off"})
    assert missing.status_code == 404
    invalid = writer.post(URL, json={"document": {"percentage": 200}})
    assert invalid.status_code == 422
    assert invalid.json()["problems"][0]["path"] == "percentage"
    assert writer.post(URL, json={"document": "off", "days": 0}).status_code == 400
    assert writer.post(URL, json={"document": "off", "days": "7"}).status_code == 400
    assert writer.post(URL, json={"document": "off", "extra": 1}).status_code == 400
    assert writer.post(URL, json={}).status_code == 400
    reader = client_for(app, Permission.READ)
    assert reader.post(URL, json={"document": "off"}).status_code == 403


def test_without_an_event_store_is_501(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'f.db'}", settings=Settings(events_db=""))
    try:
        client = client_for(app, Permission.WRITE)
        assert client.put("/api/v1/flags/checkout", json={"document": "on"}).status_code == 201
        response = client.post(URL, json={"document": "off"})
        assert response.status_code == 501
        assert "event store" in response.json()["error"]
    finally:
        app.state.flagstaff.close()


def test_openapi_describes_it() -> None:
    document = openapi_document()
    operation = document["paths"]["/api/v1/flags/{name}/blast"]["post"]
    assert operation["operationId"] == "blastRadius"
    assert {"200", "404", "422", "501"} <= set(operation["responses"])
    assert "BlastRadius" in document["components"]["schemas"]
