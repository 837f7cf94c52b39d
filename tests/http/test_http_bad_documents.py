"""``flagstaff serve`` over a store holding a bad row (issue 12, section 1).

The report: ``UPDATE flagstaff_flags SET raw=X'FFFE00' WHERE name='a'`` made ``/healthz`` answer
503 and ``/api/v1/flags`` and ``/`` answer 500 until a restart. Wanted: every page and answer
works, the bad document is named (with a printable reason, its text escaped), the other flags keep
updating, and repairing the row brings the flag back.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.http.app import ServerState, Settings, create_app
from flagstaff.http.events import _event
from flagstaff.http.tokens import Permission
from flagstaff.stores.base import Record, decode_raw
from flagstaff.stores.sqlite import SQLiteStore
from tests._support.http_server import make_token

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "flags.db"


@pytest.fixture
def app(db: Path) -> Iterator[Starlette]:
    app = create_app(f"sqlite:///{db}?poll=0.02", settings=Settings(stale_days=30))
    yield app
    app.state.flagstaff.close()


@pytest.fixture
def http(app: Starlette) -> TestClient:
    state: ServerState = app.state.flagstaff
    token = make_token(state, Permission.WRITE, "alice")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def _sql(db: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(statement, args)
    conn.close()


def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _put(http: TestClient, name: str, document: Any) -> None:
    response = http.put(f"/api/v1/flags/{name}", json={"document": document})
    assert response.status_code in (200, 201), response.text


def test_serve_keeps_answering_and_names_the_bad_document(db: Path, app: Starlette, http: TestClient) -> None:
    _put(http, "a", "on")
    _put(http, "b", "off")
    _sql(db, "UPDATE flagstaff_flags SET raw=X'FFFE00' WHERE name='a'")
    client = app.state.flagstaff.client
    _until(lambda: "a" in client.status().invalid)

    health = http.get("/healthz")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["state"] == "live" and body["invalid"] == 1
    assert "byte 0xff" in body["invalid_flags"]["a"]

    listing = http.get("/api/v1/flags")
    assert listing.status_code == 200, listing.text
    flags = {f["name"]: f for f in listing.json()["flags"]}
    assert flags["a"]["state"] == "invalid"
    assert flags["a"]["document"] == "\\xff\\xfe\\x00"  # the bytes, shown escaped
    assert any("byte 0xff" in p["message"] for p in flags["a"]["problems"])
    assert flags["b"]["state"] == "off"

    one = http.get("/api/v1/flags/a")
    assert one.status_code == 200 and one.json()["state"] == "invalid"
    history = http.get("/api/v1/flags/a/history")
    assert history.status_code == 200, history.text

    page = http.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text
    assert 'id="bad-documents"' in page.text and "byte 0xff" in page.text
    assert http.get("/flags/a", headers={"Accept": "text/html"}).status_code == 200

    # Every other flag keeps updating, served by the client too...
    _put(http, "b", "on")
    _until(lambda: client.is_enabled("b"))
    # ...and repairing the row brings the flag back, with no restart.
    _sql(db, "UPDATE flagstaff_flags SET raw='\"off\"' WHERE name='a'")
    _until(lambda: "a" not in client.status().invalid)
    assert not client.is_enabled("a")
    assert http.get("/healthz").json()["invalid_flags"] == {}
    assert 'id="bad-documents"' not in http.get("/", headers={"Accept": "text/html"}).text


def test_a_bad_document_is_shown_escaped(db: Path, app: Starlette, http: TestClient) -> None:
    _put(http, "a", "on")
    # Markup and a terminal escape in a document that is not JSON: shown as text, never as markup.
    _sql(db, "UPDATE flagstaff_flags SET raw=? WHERE name='a'", "<script>alert(1)</script>\x1b[31m")
    client = app.state.flagstaff.client
    _until(lambda: "a" in client.status().invalid)
    page = http.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    flag = http.get("/api/v1/flags/a").json()
    assert flag["document"] == "<script>alert(1)</script>\\x1b[31m"


def test_the_event_stream_shows_a_bad_document_as_printable_text() -> None:
    event = _event("a", Record("a", decode_raw(b"\xff\xfe\x00"), 2), 3)
    assert event.document == "\\xff\\xfe\\x00"
    json.dumps(event.document, ensure_ascii=False).encode("utf-8")  # what the stream sends


def test_a_bad_flag_is_repaired_through_the_api(db: Path, app: Starlette, http: TestClient) -> None:
    _put(http, "a", "on")
    _sql(db, "UPDATE flagstaff_flags SET raw=X'FFFE00' WHERE name='a'")
    client = app.state.flagstaff.client
    _until(lambda: "a" in client.status().invalid)
    response = http.put("/api/v1/flags/a", json={"document": "off"}, headers={"If-Match": '"2"'})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "off"
    _until(lambda: "a" not in client.status().invalid and not client.is_enabled("a"))


def test_flagstaff_serve_follows_past_the_issues_update(db: Path, tmp_path: Path) -> None:
    """The issue's steps against a real ``flagstaff serve`` process."""
    store = SQLiteStore(str(db))
    store.put("a", '"on"')
    store.put("b", '"off"')
    store.close()
    env = {k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}
    command = [sys.executable, "-m", "flagstaff", "--store", f"sqlite:///{db}", "serve", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--login-link"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        link = proc.stdout.readline().split()[1]
        base = link.split("/login")[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx2.get(f"{base}/healthz").status_code == 200
                break
            except httpx2.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        _sql(db, "UPDATE flagstaff_flags SET raw=X'FFFE00' WHERE name='a'")
        _until(lambda: "a" in httpx2.get(f"{base}/healthz").json()["invalid_flags"])
        health = httpx2.get(f"{base}/healthz")
        assert health.status_code == 200 and health.json()["state"] == "live"
        with httpx2.Client() as browser:
            assert browser.get(link, follow_redirects=False).status_code == 303
            listing = browser.get(f"{base}/api/v1/flags")
            assert listing.status_code == 200
            assert {f["name"]: f["state"] for f in listing.json()["flags"]} == {"a": "invalid", "b": "off"}
            page = browser.get(f"{base}/", headers={"Accept": "text/html"})
            assert page.status_code == 200 and 'id="bad-documents"' in page.text
        _sql(db, "UPDATE flagstaff_flags SET raw='\"off\"' WHERE name='a'")
        _until(lambda: httpx2.get(f"{base}/healthz").json()["invalid_flags"] == {})
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "Traceback" not in err
