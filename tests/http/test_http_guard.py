"""The guard loop inside the server, and GET/POST /api/v1/flags/{name}/guard.

A real app over a SQLite store, its event store a real SQLite file of synthetic
exposures and ``errors`` events: the treatment errs at 10%, control at 2%, so a
guardrail of +2 points is breached beyond chance.
"""

from __future__ import annotations

import json
import os
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

from flagstaff.context import Context
from flagstaff.evaluate import evaluate
from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.http.app import ServerState, Settings, create_app
from flagstaff.http.openapi import document as openapi_document
from flagstaff.http.tokens import Permission
from flagstaff.model import parse_flag
from flagstaff.stores import open_store
from flagstaff.testing import wait_until
from tests._support.http_server import ServerThread, make_token

pytestmark = pytest.mark.timeout(60)

GUARDRAILS = [{"metric": "errors", "max_increase": 0.02, "min_units": 300}]
DOC: dict[str, Any] = {"percentage": 50, "guardrails": GUARDRAILS, "owner": "team-checkout"}
URL = "/api/v1/flags/checkout/guard"


def record(events_db: Path, *, units: int = 2000, control: float = 0.02, treatment: float = 0.10) -> None:
    """``units`` users exposed an hour ago (no variant, as a percentage flag's exposure is);
    every k-th unit of each arm errs afterwards, so each arm's rate is as given."""
    flag = parse_flag("checkout", DOC)
    now = time.time()
    counts = {True: 0, False: 0}
    events: list[Event] = []
    for i in range(units):
        key = f"u{i}"
        treated = evaluate(flag, Context(user_id=key), now).enabled
        counts[treated] += 1
        events.append(Event(EventKind.EXPOSURE, now - 3600, key, "checkout"))
        rate = treatment if treated else control
        if counts[treated] % round(1 / rate) == 0:
            events.append(Event(EventKind.TRACK, now - 1800, key, name="errors"))
    sink = SQLiteSink(events_db)
    sink.write(events)
    sink.close()


def make_app(tmp_path: Path, interval: float) -> Starlette:
    return create_app(f"sqlite:///{tmp_path / 'flags.db'}", settings=Settings(guard_interval=interval))


def client_for(app: Starlette, scope: Permission) -> TestClient:
    state: ServerState = app.state.flagstaff
    return TestClient(app, headers={"Authorization": f"Bearer {make_token(state, scope)}"})


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    app = make_app(tmp_path, 0)  # no loop: the tests check on demand
    yield app
    app.state.flagstaff.close()


@pytest.fixture
def writer(app: Starlette) -> TestClient:
    client = client_for(app, Permission.WRITE)
    assert client.put("/api/v1/flags/checkout", json={"document": DOC}).status_code == 201
    return client


def test_the_loop_halts_a_breaching_flag_with_the_evidence_in_history(tmp_path: Path) -> None:
    app = make_app(tmp_path, 0.2)
    state: ServerState = app.state.flagstaff
    try:
        with ServerThread(app) as server:
            headers = {"Authorization": f"Bearer {make_token(state, Permission.WRITE)}"}
            http = httpx2.Client(base_url=server.url, headers=headers, timeout=30)
            assert http.put("/api/v1/flags/checkout", json={"document": DOC}).status_code == 201
            assert http.put("/api/v1/flags/calm", json={"document": "on"}).status_code == 201
            wait_until(lambda: state.client.snapshot.get("checkout") is not None)
            record(tmp_path / "flags.db.events")  # where the server ingests events by default

            def halted() -> bool:
                return bool(http.get(URL).json()["halted"])

            wait_until(halted, timeout=30, message=lambda: http.get(URL).text)
            answer = http.get(URL).json()
            document = http.get("/api/v1/flags/checkout").json()["document"]
            history = http.get("/api/v1/flags/checkout/history").json()
            metrics = http.get("/metrics").text
            calm = http.get("/api/v1/flags/calm/guard").json()
    finally:
        state.close()
    assert document == {**DOC, "enabled": False}  # off, the rest of the document kept
    latest = history["entries"][0]
    author = latest["author"]
    assert author.startswith("guard: errors +") and "> 2% (n " in author
    assert answer["halt"]["author"] == author and answer["halt"]["version"] == latest["version"]
    assert answer["breached"] is True and answer["enforced"] is True and answer["error"] is None
    (rail,) = answer["guardrails"]
    assert rail["metric"] == "errors" and rail["breached"] is True
    assert rail["treatment_rate"] == pytest.approx(0.10, abs=0.01)
    assert rail["control_rate"] == pytest.approx(0.02, abs=0.01)
    assert rail["interval"][0] > 0.02 and rail["evidence"] in author
    assert answer["checked_at"] > time.time() - 30
    assert "flagstaff_guard_halts_total 1" in metrics
    # A flag without guardrails is never checked by the loop.
    assert calm["checked_at"] is None and calm["guardrails"] == [] and calm["halted"] is False


def test_check_now_judges_and_enforce_halts_in_the_callers_name(app: Starlette, writer: TestClient) -> None:
    state: ServerState = app.state.flagstaff
    never = writer.get(URL).json()
    assert never["checked_at"] is None and never["halted"] is False and never["interval"] == 0
    record(Path(str(state.events_db)))
    checked = writer.post(URL)
    assert checked.status_code == 200, checked.text
    data = checked.json()
    assert data["breached"] is True and data["halted"] is False and data["enforced"] is False
    assert writer.get("/api/v1/flags/checkout").json()["document"] == DOC  # a check writes nothing
    assert writer.get(URL).json()["checked_at"] == data["checked_at"]  # kept for GET

    halted = writer.post(URL, json={"enforce": True}).json()
    assert halted["halted"] is True and halted["halted_by_check"] is True
    author = halted["halt"]["author"]
    assert "[token " in author and " guard: errors +" in author  # who asked, then the evidence
    assert writer.get("/api/v1/flags/checkout").json()["document"]["enabled"] is False
    again = writer.post(URL, json={"enforce": True}).json()  # off already: nothing more written
    assert again["halted"] is True and again["halted_by_check"] is False
    assert len(writer.get("/api/v1/flags/checkout/history").json()["entries"]) == 2


def test_scopes_and_errors(app: Starlette, writer: TestClient) -> None:
    reader = client_for(app, Permission.READ)
    assert reader.get(URL).status_code == 200
    assert reader.post(URL).status_code == 403
    assert writer.get("/api/v1/flags/nope/guard").status_code == 404
    assert writer.post("/api/v1/flags/nope/guard").status_code == 404
    assert writer.post(URL, json={"enforce": "yes"}).status_code == 400
    assert writer.post(URL, json={"other": 1}).status_code == 400
    # Nothing ingested yet: a check says so, and is no error of the server's.
    empty = writer.post(URL, json={"enforce": True})
    assert empty.status_code == 200
    assert "no events recorded yet" in empty.json()["error"] and empty.json()["halted"] is False


def test_without_an_event_store_is_501(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'f.db'}", settings=Settings(events_db=""))
    try:
        client = client_for(app, Permission.WRITE)
        assert client.put("/api/v1/flags/checkout", json={"document": DOC}).status_code == 201
        assert app.state.flagstaff.guard is None
        assert client.get(URL).status_code == 501
        assert client.post(URL).status_code == 501
    finally:
        app.state.flagstaff.close()


def test_the_loop_survives_a_broken_event_store_and_counts_it(tmp_path: Path) -> None:
    app = make_app(tmp_path, 0.05)
    state: ServerState = app.state.flagstaff
    try:
        client = client_for(app, Permission.WRITE)
        assert client.put("/api/v1/flags/checkout", json={"document": DOC}).status_code == 201
        wait_until(lambda: state.client.snapshot.get("checkout") is not None)
        events = tmp_path / "flags.db.events"
        events.write_bytes(b"this is not a SQLite file" * 100)
        wait_until(lambda: state.metrics.value("flagstaff_guard_errors_total") >= 2, timeout=30)
        broken = client.get(URL).json()
        assert broken["error"] and "DatabaseError" in broken["error"]
        assert state.guard is not None and state.guard._thread is not None and state.guard._thread.is_alive()
        events.unlink()
        record(events)  # repaired: the next round judges, and halts
        wait_until(lambda: client.get(URL).json()["halted"], timeout=30)
    finally:
        state.close()
    assert state.guard is not None and state.guard._thread is not None
    assert not state.guard._thread.is_alive()  # closing the server stops the loop


def test_a_bad_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="guard interval"):
        make_app(tmp_path, -1)


def test_openapi_describes_both() -> None:
    paths = openapi_document()["paths"]["/api/v1/flags/{name}/guard"]
    assert paths["get"]["operationId"] == "flagGuard"
    assert paths["post"]["operationId"] == "checkFlagGuard"
    assert {"200", "404", "501"} <= set(paths["post"]["responses"])
    assert json.dumps(paths)  # plain JSON


def test_flagstaff_serve_runs_the_guard_loop(tmp_path: Path) -> None:
    """The command itself: ``serve --guard-interval 0.3`` halts the seeded flag once events
    show the breach, and says so in the store's history."""
    (tmp_path / "seed.json").write_text(json.dumps({"checkout": DOC}))
    env = {k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}
    bad = subprocess.run(
        [sys.executable, "-m", "flagstaff", "serve", "--guard-interval", "-1"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--guard-interval must be 0 (off) or more" in bad.stderr
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flagstaff",
            "serve",
            "--port",
            "0",
            "--seed",
            "seed.json",
            "--guard-interval",
            "0.3",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("Serving ")
        record(tmp_path / "flagstaff.db.events")  # beside the default store, flagstaff.db
        store = open_store(f"sqlite:///{tmp_path / 'flagstaff.db'}")
        try:

            def halted() -> bool:
                record_ = store.get("checkout")
                return record_ is not None and json.loads(record_.raw).get("enabled") is False

            wait_until(halted, timeout=30)
            author = store.history("checkout")[0].author
        finally:
            store.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert author is not None and author.startswith("guard: errors +")
    audit = [json.loads(line) for line in err.splitlines() if '"flagstaff.audit"' in line]
    assert any(line["msg"].startswith("guard halted checkout: guard: errors +") for line in audit), err


NO_STATS = """
import sys, tempfile
sys.modules["numpy"] = None  # as a server installed without the stats extra sees it
sys.modules["scipy"] = None
from flagstaff.http.app import create_app
d = tempfile.mkdtemp()
app = create_app(f"sqlite:///{d}/f.db")
state = app.state.flagstaff
state.admin.set("x", {"percentage": 50, "guardrails": [{"metric": "errors", "max_increase": 0.02}]})
open(f"{d}/f.db.events", "w").close()
print(state.guard.check("x").error)
state.close()
"""


def test_a_server_without_the_stats_extra_starts_and_says_what_the_guard_needs() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_STATS], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'flagstaff[stats]'" in proc.stdout
