"""The API side of issue 16 over a real SQLite store: archive and restore ops, a comment with
every write (kept in history), the new kinds in the listing, and the HTML of the
playground and compare pages (escaping, bad input)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.http.app import Settings, create_app
from flagstaff.http.tokens import Permission
from tests._support.http_server import make_token


@pytest.fixture(name="client")
def client_fixture(tmp_path: Path) -> Iterator[TestClient]:
    app: Starlette = create_app(f"sqlite:///{tmp_path / 'flags.db'}", settings=Settings(stale_days=30))
    token = make_token(app.state.flagstaff, Permission.WRITE, "alice")
    yield TestClient(app, headers={"Authorization": f"Bearer {token}"})
    app.state.flagstaff.close()


def _history(client: TestClient, name: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/flags/{name}/history")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def test_archive_restore_ops_with_comments(client: TestClient) -> None:
    created = client.post(
        "/api/v1/flags",
        json={"name": "checkout", "document": {"percentage": 30, "kind": "release"}, "comment": "new flow"},
    )
    assert created.status_code == 201, created.text
    archived = client.patch("/api/v1/flags/checkout", json={"op": "archive", "comment": "shipped"})
    assert archived.status_code == 200, archived.text
    body = archived.json()
    assert (body["archived"], body["state"], body["version"]) == (True, "off", 2)
    decision = client.post("/api/v1/evaluate", json={"flag": "checkout", "context": {"user_id": "u1"}})
    assert decision.json()["decisions"]["checkout"]["reason"] == "archived"
    again = client.patch("/api/v1/flags/checkout", json={"op": "archive"})
    assert again.json()["changed"] is False

    listed = client.get("/api/v1/flags?kind=release").json()["flags"]
    assert [(f["name"], f["archived"]) for f in listed] == [("checkout", True)]
    restored = client.patch("/api/v1/flags/checkout", headers={"If-Match": '"2"'}, json={"op": "restore"})
    assert restored.status_code == 200 and restored.json()["document"] == {
        "percentage": 30,
        "kind": "release",
    }
    stale = client.patch("/api/v1/flags/checkout", headers={"If-Match": '"2"'}, json={"op": "archive"})
    assert stale.status_code == 409

    put = client.put("/api/v1/flags/checkout", json={"document": 50, "comment": "half"})
    assert put.status_code == 200, put.text
    back = client.post("/api/v1/flags/checkout/rollback", json={"version": 1, "comment": "too soon"})
    assert back.status_code == 200, back.text
    deleted = client.delete("/api/v1/flags/checkout?comment=gone%20for%20good")
    assert deleted.status_code == 204
    entries = _history(client, "checkout")
    assert [(e["action"], e["actor"], e["comment"]) for e in entries] == [
        ("delete", "alice", "gone for good"),
        ("update", "alice", "too soon"),
        ("update", "alice", "half"),
        ("update", "alice", None),
        ("update", "alice", "shipped"),
        ("create", "alice", "new flow"),
    ]
    assert entries[0]["token_id"] is not None  # the comment does not hide who, with which token


def test_bad_comments_are_refused_and_nothing_is_written(client: TestClient) -> None:
    client.post("/api/v1/flags", json={"name": "f", "document": "on"})
    wrong_type = client.put("/api/v1/flags/f", json={"document": "off", "comment": 5})
    assert (wrong_type.status_code, wrong_type.json()["error"]) == (400, "'comment' must be a string")
    too_long = client.patch("/api/v1/flags/f", json={"op": "kill", "comment": "x" * 501})
    assert too_long.status_code == 422
    assert too_long.json()["problems"] == [
        {"path": "comment", "message": "must be at most 500 characters, not 501"}
    ]
    assert client.get("/api/v1/flags/f").json()["version"] == 1


def test_the_new_kinds_filter_the_listing(client: TestClient) -> None:
    for name, kind in (("a", "ops"), ("b", "permission"), ("c", "experiment")):
        client.post("/api/v1/flags", json={"name": name, "document": {"kind": kind, "percentage": 1}})
    assert [f["name"] for f in client.get("/api/v1/flags?kind=ops").json()["flags"]] == ["a"]
    assert client.get("/api/v1/flags?kind=nonsense").status_code == 400


def test_playground_and_compare_escape_what_they_show(client: TestClient) -> None:
    hostile = '<script>alert("x")</script>'
    client.post("/api/v1/flags", json={"name": "f", "document": {"description": hostile}})
    client.put("/api/v1/flags/f", json={"document": {"description": "fine"}, "comment": hostile})
    page = client.get("/playground", params={"user": hostile, "attrs": f"plan={hostile}"})
    assert page.status_code == 200 and hostile not in page.text
    assert "&lt;script&gt;" in page.text
    compare = client.get("/flags/f/compare?a=1&b=2")
    assert compare.status_code == 200 and hostile not in compare.text
    assert compare.headers["content-security-policy"].startswith("default-src 'self'")
    missing = client.get("/flags/f/compare?a=1&b=x")
    assert "f has no version &#39;x&#39; in its history" in missing.text
    nothing = client.get("/flags/ghost/compare")
    assert nothing.status_code == 200 and "No recorded versions." in nothing.text
