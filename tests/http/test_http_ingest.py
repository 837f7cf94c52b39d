"""POST /api/v1/ingest: validation, auth, the event store it writes, and the HTTP sink
posting to a real server on loopback."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff import Context
from flagstaff.decision import Decision, Reason
from flagstaff.exposures import HttpSink, Recorder, RecorderOptions
from flagstaff.http.app import ServerState, Settings, create_app
from flagstaff.http.tokens import Permission
from tests._support.http_server import ServerThread, make_token

pytestmark = pytest.mark.timeout(60)

EXPOSURE = {"kind": "exposure", "time": 100.0, "key": "u1", "flag": "exp", "variant": "t", "experiment_id": 7}
TRACK = {"kind": "track", "time": 101.0, "key": "u1", "name": "purchase", "value": 9.5}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "flags.db"


@pytest.fixture
def app(db: Path) -> Iterator[Starlette]:
    app = create_app(f"sqlite:///{db}")
    yield app
    app.state.flagstaff.close()


@pytest.fixture
def state(app: Starlette) -> ServerState:
    result: ServerState = app.state.flagstaff
    return result


def client_for(app: Starlette, state: ServerState, scope: Permission) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {make_token(state, scope)}"})


def rows(db: Path, table: str) -> list[tuple[Any, ...]]:
    if not Path(f"{db}.events").exists():  # opened by the first ingest that writes
        return []
    with sqlite3.connect(f"{db}.events") as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def test_ingest_writes_events_beside_the_store(app: Starlette, state: ServerState, db: Path) -> None:
    client = client_for(app, state, Permission.WRITE)
    assert not Path(f"{db}.events").exists()  # no file for a server that never ingests
    response = client.post("/api/v1/ingest", json={"events": [EXPOSURE, TRACK]})
    assert response.status_code == 200, response.text
    assert response.json() == {"written": 2}
    assert rows(db, "flagstaff_exposures") == [(1, 100.0, "exp", 7, "t", "u1", None)]
    assert rows(db, "flagstaff_events") == [(1, 101.0, "purchase", "u1", 9.5, None)]


def test_ingest_accepts_a_gzip_body(app: Starlette, state: ServerState, db: Path) -> None:
    client = client_for(app, state, Permission.WRITE)
    body = gzip.compress(json.dumps({"events": [TRACK] * 3}).encode())
    response = client.post(
        "/api/v1/ingest",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert len(rows(db, "flagstaff_events")) == 3
    assert (
        client.post("/api/v1/ingest", content=b"not gzip", headers={"Content-Encoding": "gzip"}).status_code
        == 400
    )
    assert client.post("/api/v1/ingest", content=b"{}", headers={"Content-Encoding": "br"}).status_code == 415


def test_ingest_validates_every_event_and_writes_none_when_one_is_bad(
    app: Starlette, state: ServerState, db: Path
) -> None:
    client = client_for(app, state, Permission.WRITE)
    bad = {"events": [TRACK, {"kind": "track", "time": 1}, {**EXPOSURE, "variant": 3}]}
    response = client.post("/api/v1/ingest", json=bad)
    assert response.status_code == 400
    assert response.json()["problems"] == [
        {"path": "events[1].name", "message": "a track event has a name"},
        {"path": "events[2].variant", "message": "must be a non-empty string of at most 1024"},
    ]
    assert rows(db, "flagstaff_events") == []
    assert client.post("/api/v1/ingest", json={"events": {}}).status_code == 400
    assert client.post("/api/v1/ingest", json={"events": [], "more": 1}).status_code == 400
    assert client.post("/api/v1/ingest", json={"events": []}).json() == {"written": 0}


def test_ingest_needs_a_write_token(app: Starlette, state: ServerState) -> None:
    assert TestClient(app).post("/api/v1/ingest", json={"events": [TRACK]}).status_code == 401
    reader = client_for(app, state, Permission.READ)
    assert reader.post("/api/v1/ingest", json={"events": [TRACK]}).status_code == 403


def test_ingest_body_is_bounded_also_once_decompressed(db: Path) -> None:
    app = create_app(f"sqlite:///{db}", settings=Settings(max_body=10_000))
    try:
        client = client_for(app, app.state.flagstaff, Permission.WRITE)
        big = json.dumps({"events": [TRACK] * 500}).encode()
        assert client.post("/api/v1/ingest", content=big).status_code == 413
        small = gzip.compress(big)
        assert len(small) < 10_000
        assert (
            client.post("/api/v1/ingest", content=small, headers={"Content-Encoding": "gzip"}).status_code
            == 413
        )
    finally:
        app.state.flagstaff.close()


def test_without_an_event_store_ingest_is_501(tmp_path: Path) -> None:
    for app in (
        create_app("memory://", token_db=str(tmp_path / "t1")),
        create_app(f"sqlite:///{tmp_path / 'f.db'}", settings=Settings(events_db="")),
    ):
        try:
            client = client_for(app, app.state.flagstaff, Permission.WRITE)
            response = client.post("/api/v1/ingest", json={"events": [TRACK]})
            assert response.status_code == 501
            assert "no event store" in response.json()["error"]
        finally:
            app.state.flagstaff.close()


def test_http_sink_posts_to_a_real_server(app: Starlette, state: ServerState, db: Path) -> None:
    token = make_token(state, Permission.WRITE)
    with ServerThread(app) as server:
        rec = Recorder(HttpSink(server.url, token, max_events=50), RecorderOptions(batch_size=200))
        for i in range(120):
            rec(Decision("exp", True, Reason.EXPERIMENT, "t", experiment_id=7), Context(user_id=f"u{i}"))
        rec.track("purchase", Context(user_id="u1"), 3.0)
        assert rec.flush(20)
        rec.close()
        assert (rec.stats().written, rec.stats().failed) == (121, 0)
        assert len(rows(db, "flagstaff_exposures")) == 120
        assert rows(db, "flagstaff_events")[0][2:5] == ("purchase", "u1", 3.0)

        denied = Recorder(HttpSink(server.url, "fs_bad_token"))
        denied.track("purchase", Context(user_id="u1"))
        assert denied.flush(20)
        denied.close()
        assert (denied.stats().written, denied.stats().failed) == (0, 1)
    assert "fs_bad_token" not in repr(HttpSink("http://x", "fs_bad_token"))


def test_a_lone_surrogate_in_a_gzip_body_is_400(app: Starlette, state: ServerState, db: Path) -> None:
    client = client_for(app, state, Permission.WRITE)
    body = gzip.compress(b'{"events": [{"kind": "track", "time": 1, "name": "x\\ud800"}]}')
    response = client.post("/api/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert rows(db, "flagstaff_events") == []
