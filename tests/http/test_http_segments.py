"""Segments over the JSON API (real SQLite store, Starlette's TestClient), flag routes that
never serve a segment, and the evaluate endpoint's OpenFeature context and values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.http.app import ServerState, create_app
from flagstaff.http.tokens import Permission
from flagstaff.testing import wait_until
from tests._support.http_server import make_token

STAFF = {"description": "Internal staff", "owner": "platform", "users": ["alice"], "groups": ["employee"]}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    app = create_app(f"sqlite:///{tmp_path / 'flags.db'}")
    yield app
    app.state.flagstaff.close()


@pytest.fixture
def state(app: Starlette) -> ServerState:
    result: ServerState = app.state.flagstaff
    return result


@pytest.fixture
def client(app: Starlette, state: ServerState) -> TestClient:
    token = make_token(state, Permission.WRITE, "alice")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def put(client: TestClient, path: str, document: Any, version: int | None = None) -> Any:
    headers = {"If-Match": f'"{version}"'} if version is not None else {}
    return client.put(f"/api/v1{path}", json={"document": document}, headers=headers)


def served(state: ServerState) -> None:
    """Until the server's client serves what the store holds now."""
    target = state.store.load().revision
    assert wait_until(lambda: state.client.snapshot.revision >= target, timeout=10)


def decision(client: TestClient, flag: str, context: Any) -> dict[str, Any]:
    response = client.post("/api/v1/evaluate", json={"flag": flag, "context": context})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["decisions"][flag]
    return result


# --------------------------------------------------------------------------- segments


def test_create_read_replace_with_etags_and_history(client: TestClient) -> None:
    created = put(client, "/segments/staff", STAFF)
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    body = created.json()
    assert (body["name"], body["key"], body["version"]) == ("staff", "segment:staff", 1)
    assert body["description"] == "Internal staff" and body["owner"] == "platform"
    assert body["used_by"] == [] and body["valid"] is True and body["changed"] is True

    got = client.get("/api/v1/segments/staff")
    assert got.status_code == 200 and got.headers["etag"] == '"1"'
    assert got.json()["document"] == STAFF

    same = put(client, "/segments/staff", STAFF, version=1)
    assert same.status_code == 200 and same.json()["changed"] is False and same.json()["version"] == 1

    replaced = put(client, "/segments/staff", {**STAFF, "users": ["alice", "bob"]}, version=1)
    assert replaced.status_code == 200 and replaced.headers["etag"] == '"2"'
    stale = put(client, "/segments/staff", STAFF, version=1)
    assert stale.status_code == 409 and stale.json()["current_version"] == 2
    assert client.get("/api/v1/segments/staff").json()["document"]["users"] == ["alice", "bob"]

    listed = client.get("/api/v1/segments").json()
    assert [s["name"] for s in listed["segments"]] == ["staff"]
    assert listed["revision"] >= 2

    history = client.get("/api/v1/segments/staff/history").json()
    assert history["name"] == "staff"
    assert [(e["action"], e["version"], e["actor"]) for e in history["entries"]] == [
        ("update", 2, "alice"),
        ("create", 1, "alice"),
    ]


def test_if_none_match_creates_only(client: TestClient) -> None:
    first = client.put(
        "/api/v1/segments/qa", json={"document": {"users": ["q"]}}, headers={"If-None-Match": "*"}
    )
    assert first.status_code == 201
    again = client.put(
        "/api/v1/segments/qa", json={"document": {"users": ["x"]}}, headers={"If-None-Match": "*"}
    )
    assert again.status_code == 409 and again.json()["current_version"] == 1
    assert client.get("/api/v1/segments/qa").json()["document"] == {"users": ["q"]}
    odd = client.put(
        "/api/v1/segments/qa", json={"document": {"users": ["x"]}}, headers={"If-None-Match": '"1"'}
    )
    assert odd.status_code == 400


def test_deleting_a_flag_other_flags_require_is_409_listing_them(client: TestClient) -> None:
    assert put(client, "/flags/new_checkout", "on").status_code == 201
    assert (
        put(client, "/flags/checkout_v2", {"prerequisites": ["new_checkout"], "percentage": 10}).status_code
        == 201
    )
    refused = client.delete("/api/v1/flags/new_checkout")
    assert refused.status_code == 409, refused.text
    assert refused.json()["used_by"] == ["checkout_v2"]
    assert client.get("/api/v1/flags/new_checkout").status_code == 200


def test_an_invalid_segment_is_422_with_its_problems_and_nothing_is_written(
    client: TestClient, state: ServerState
) -> None:
    before = state.store.load().revision
    response = put(client, "/segments/staff", {"users": ["alice"], "grups": ["employee"]})
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert any(p["path"] == "grups" and "groups" in p["message"] for p in problems), problems
    assert state.store.load().revision == before
    assert client.get("/api/v1/segments/staff").status_code == 404
    checked = client.post("/api/v1/validate", json={"name": "segment:staff", "document": {"grups": []}})
    assert checked.json()["ok"] is False
    assert [p["path"] for p in checked.json()["problems"]] == [p["path"] for p in problems]
    assert client.post("/api/v1/validate", json={"name": "segment:staff", "document": STAFF}).json()["ok"]


def test_missing_segments_are_404(client: TestClient) -> None:
    assert client.get("/api/v1/segments/nope").status_code == 404
    assert client.get("/api/v1/segments/nope").json()["error"] == "no segment named 'nope'"
    assert client.delete("/api/v1/segments/nope").status_code == 404
    gone = client.delete("/api/v1/segments/nope", headers={"If-Match": '"1"'})
    assert (gone.status_code, gone.json()["error"]) == (404, "no segment named 'nope'")
    assert client.get("/api/v1/segments/nope/history").json() == {"name": "nope", "entries": []}


def test_segments_are_not_flags(client: TestClient) -> None:
    assert put(client, "/segments/staff", STAFF).status_code == 201
    assert put(client, "/flags/plain", "on").status_code == 201
    assert [f["name"] for f in client.get("/api/v1/flags").json()["flags"]] == ["plain"]

    got = client.get("/api/v1/flags/segment:staff")
    assert got.status_code == 404
    assert got.json()["segment"] == "/api/v1/segments/staff"
    assert client.get("/api/v1/flags/segment:staff/history").status_code == 404
    assert client.patch("/api/v1/flags/segment:staff", json={"op": "kill"}).status_code == 404
    assert client.delete("/api/v1/flags/segment:staff").status_code == 404
    written = put(client, "/flags/segment:staff", "on")
    assert written.status_code == 422 and written.json()["problems"][0]["path"] == "name"
    created = client.post("/api/v1/flags", json={"name": "segment:other", "document": "on"})
    assert created.status_code == 422
    assert client.get("/api/v1/segments/staff").json()["document"] == STAFF  # untouched
    assert client.get("/api/v1/segments/other").status_code == 404


def test_deleting_a_segment_in_use_is_409_listing_the_flags(client: TestClient) -> None:
    assert put(client, "/segments/staff", STAFF).status_code == 201
    rule = {"targeting": [{"segments": ["staff"], "serve": "on"}]}
    assert put(client, "/flags/staff_tools", rule).status_code == 201
    assert (
        put(client, "/flags/no_staff", {"percentage": 50, "deny": {"segments": ["staff"]}}).status_code == 201
    )
    assert client.get("/api/v1/segments/staff").json()["used_by"] == ["no_staff", "staff_tools"]
    assert client.get("/api/v1/segments").json()["segments"][0]["used_by"] == ["no_staff", "staff_tools"]

    refused = client.delete("/api/v1/segments/staff", headers={"If-Match": '"1"'})
    assert refused.status_code == 409, refused.text
    assert refused.json()["used_by"] == ["no_staff", "staff_tools"]
    assert client.get("/api/v1/segments/staff").status_code == 200

    assert client.delete("/api/v1/flags/staff_tools").status_code == 204
    assert client.delete("/api/v1/flags/no_staff").status_code == 204
    assert client.delete("/api/v1/segments/staff", headers={"If-Match": '"7"'}).status_code == 409
    assert client.delete("/api/v1/segments/staff", headers={"If-Match": '"1"'}).status_code == 204
    assert client.get("/api/v1/segments/staff").status_code == 404
    history = client.get("/api/v1/segments/staff/history").json()["entries"]
    assert history[0]["action"] == "delete"


def test_a_flag_naming_a_missing_segment_is_refused_with_the_path(client: TestClient) -> None:
    rule = {"targeting": [{"groups": ["beta"], "serve": "on"}, {"segments": ["nope"], "serve": "on"}]}
    response = put(client, "/flags/f", rule)
    assert response.status_code == 422
    assert "targeting[1].segments[0]" in [p["path"] for p in response.json()["problems"]]


def test_a_read_token_cannot_write_segments(app: Starlette, state: ServerState) -> None:
    reader = TestClient(app, headers={"Authorization": f"Bearer {make_token(state, Permission.READ)}"})
    assert reader.get("/api/v1/segments").status_code == 200
    assert reader.put("/api/v1/segments/x", json={"document": {"users": ["a"]}}).status_code == 403
    assert reader.delete("/api/v1/segments/x").status_code == 403


# --------------------------------------------------------------------------- evaluate


LIMITS = {
    "targeting": [{"name": "acme", "segments": ["acme"], "serve": {"variant": "big"}}],
    "default": "off",
    "values": {"big": {"max_items": 50}, "off": {"max_items": 10}},
}


def test_evaluate_takes_openfeature_contexts_and_returns_values_through_segments(
    client: TestClient, state: ServerState
) -> None:
    acme = {"rules": [{"attribute": "org", "op": "eq", "value": "acme"}]}
    assert put(client, "/segments/acme", acme).status_code == 201
    assert put(client, "/flags/limits", LIMITS).status_code == 201
    served(state)

    inside = decision(client, "limits", {"targetingKey": "u1", "org": "acme"})
    assert inside["enabled"] is True and inside["variant"] == "big"
    assert (inside["reason"], inside["rule"]) == ("rule", "targeting[0]")
    assert inside["value"] == {"max_items": 50}
    outside = decision(client, "limits", {"targetingKey": "u1", "org": "globex"})
    assert (outside["enabled"], outside["reason"], outside["value"]) == (False, "default", {"max_items": 10})
    # The existing shape: attributes as a mapping, the user as user_id.
    nested = decision(client, "limits", {"user_id": "u1", "attributes": {"org": "acme"}})
    assert nested["value"] == {"max_items": 50}

    # One edit of the segment reaches the flag's answers.
    assert (
        put(
            client, "/segments/acme", {"rules": [{"attribute": "org", "op": "eq", "value": "globex"}]}
        ).status_code
        == 200
    )
    served(state)
    assert decision(client, "limits", {"targetingKey": "u1", "org": "acme"})["value"] == {"max_items": 10}
    assert decision(client, "limits", {"targetingKey": "u1", "org": "globex"})["value"] == {"max_items": 50}


def test_evaluate_buckets_by_the_targeting_key_and_any_attribute(
    client: TestClient, state: ServerState
) -> None:
    assert put(client, "/flags/by_user", {"percentage": 50}).status_code == 201
    assert put(client, "/flags/by_org", {"percentage": 50, "bucket_by": "org"}).status_code == 201
    served(state)
    for i in range(40):
        by_key = decision(client, "by_user", {"targetingKey": f"u{i}"})
        by_id = decision(client, "by_user", {"user_id": f"u{i}"})
        assert by_key == by_id
    # Bucketed by org: every user of one org gets the same answer; no org, not bucketed.
    orgs = {
        decision(client, "by_org", {"targetingKey": f"u{i}", "org": "acme"})["enabled"] for i in range(20)
    }
    assert len(orgs) == 1
    assert decision(client, "by_org", {"targetingKey": "u1"})["enabled"] is False
    spread = {decision(client, "by_org", {"org": f"org-{i}"})["enabled"] for i in range(40)}
    assert spread == {True, False}


def test_evaluate_refuses_a_bad_targeting_key(client: TestClient) -> None:
    for context in ({"targetingKey": 5}, {"targetingKey": "a", "user_id": "b"}):
        response = client.post("/api/v1/evaluate", json={"context": context})
        assert response.status_code == 400, context
    same = client.post("/api/v1/evaluate", json={"context": {"targetingKey": "a", "user_id": "a"}})
    assert same.status_code == 200
