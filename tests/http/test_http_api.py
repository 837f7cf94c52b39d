"""The JSON API over a real SQLite store, every endpoint and method, through Starlette's TestClient.

Authentication and the token matrix are in test_http_auth.py; the event stream,
other processes and mounting in test_http_server.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.admin import Admin
from flagstaff.http.app import ServerState, Settings, create_app
from flagstaff.http.tokens import Permission
from flagstaff.model import MAX_DOCUMENT_BYTES, decode_document
from tests._support.http_server import make_token


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "flags.db"


@pytest.fixture
def app(db: Path) -> Iterator[Starlette]:
    app = create_app(f"sqlite:///{db}", settings=Settings(stale_days=30))
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


def create(client: TestClient, name: str, document: Any) -> dict[str, Any]:
    response = client.post("/api/v1/flags", json={"name": name, "document": document})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# --------------------------------------------------------------------------- flags CRUD


def test_create_get_and_etag(client: TestClient) -> None:
    created = create(client, "checkout", {"percentage": 10, "owner": "payments", "kind": "temporary"})
    assert created["version"] == 1
    assert created["state"] == "partial"
    assert created["percentage"] == 10
    assert created["owner"] == "payments"
    assert created["updated_by"] == "alice"
    assert created["stale"] is False
    response = client.get("/api/v1/flags/checkout")
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json()["document"] == {"percentage": 10, "owner": "payments", "kind": "temporary"}


def test_create_existing_flag_is_409(client: TestClient) -> None:
    create(client, "f", "on")
    again = client.post("/api/v1/flags", json={"name": "f", "document": "off"})
    assert again.status_code == 409
    assert again.json()["current_version"] == 1
    assert client.get("/api/v1/flags/f").json()["document"] == "on"


def test_create_with_invalid_name_or_body(client: TestClient) -> None:
    bad_name = client.post("/api/v1/flags", json={"name": "has space", "document": "on"})
    assert bad_name.status_code == 422
    assert bad_name.json()["problems"][0]["path"] == "name"
    assert client.post("/api/v1/flags", json={"document": "on"}).status_code == 400
    assert client.post("/api/v1/flags", json={"name": "x", "document": "on", "extra": 1}).status_code == 400
    not_json = client.post("/api/v1/flags", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert "not JSON" in not_json.json()["error"]


# The names from issue 12 that committed and then answered 500 (CJK, zero-width space,
# right-to-left override), and a lone surrogate, which UTF-8 cannot encode.
ISSUE_NAMES = ["flag_\u65e5\u672c", "flag\u200b", "flag\u202eabc", "flag_\ud800"]


def _revision(state: ServerState) -> int:
    return state.store.load().revision


@pytest.mark.parametrize("name", ISSUE_NAMES, ids=["cjk", "zero-width", "bidi", "lone-surrogate"])
def test_refused_name_commits_nothing_and_a_retry_is_refused_the_same_way(
    client: TestClient, state: ServerState, name: str
) -> None:
    before = _revision(state)
    # Raw bytes: the JSON escapes \uXXXX, as any client would send them.
    body = json.dumps({"name": name, "document": "on"}).encode()
    for _attempt in range(2):  # the retry must be refused the same way, not be a 409 or a 500
        response = client.post("/api/v1/flags", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code in (400, 422), response.text
        error = response.json()
        assert "U+" in error["error"]  # the bad character is named by code point
        assert state.store.load().records == {}
        assert _revision(state) == before
        assert state.store.history(None, limit=10) == []
    assert client.put(
        f"/api/v1/flags/{quote(name, errors='surrogatepass')}", json={"document": "on"}
    ).status_code in (
        400,
        422,
    )
    assert state.store.load().records == {}


def test_refused_name_problem_names_the_character(client: TestClient) -> None:
    response = client.post("/api/v1/flags", json={"name": "flag\u200b", "document": "on"})
    assert response.status_code == 422
    problem = response.json()["problems"][0]
    assert problem["path"] == "name"
    assert "U+200B (ZERO WIDTH SPACE)" in problem["message"]


def test_lone_surrogate_in_a_document_is_400_and_commits_nothing(
    client: TestClient, state: ServerState
) -> None:
    body = b'{"name": "f", "document": {"description": "\\ud800", "percentage": 5}}'
    for _attempt in range(2):
        response = client.post("/api/v1/flags", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert "lone surrogate" in response.json()["error"]
    key = b'{"document": {"\\udfff": 1}}'
    assert (
        client.put("/api/v1/flags/f", content=key, headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    # Raw UTF-8-encoded surrogate bytes (which json.loads lets through) are refused the same way.
    raw = b'{"name": "f", "document": {"description": "\xed\xa0\x80", "percentage": 5}}'
    assert (
        client.post("/api/v1/flags", content=raw, headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert state.store.load().records == {}
    # A surrogate pair is one real character (an emoji here), not a lone surrogate: accepted.
    pair = b'{"name": "f", "document": {"description": "\\ud83d\\ude00", "percentage": 5}}'
    created = client.post("/api/v1/flags", content=pair, headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert created.json()["description"] == "\U0001f600"


def test_created_flag_has_a_location_and_a_retry_is_409_not_500(client: TestClient) -> None:
    first = client.post("/api/v1/flags", json={"name": "Checkout.v2-beta_x", "document": "on"})
    assert first.status_code == 201
    assert first.headers["location"] == "/api/v1/flags/Checkout.v2-beta_x"
    assert client.get(first.headers["location"]).json()["version"] == 1
    retry = client.post("/api/v1/flags", json={"name": "Checkout.v2-beta_x", "document": "on"})
    assert retry.status_code == 409
    assert retry.json()["current_version"] == 1


@pytest.mark.parametrize("twin", ["New-Checkout", "new.checkout", "NEW_CHECKOUT", "new_check0ut"])
def test_a_name_that_looks_like_an_existing_one_is_refused(
    client: TestClient, state: ServerState, twin: str
) -> None:
    create(client, "new_checkout", "on")
    revision = _revision(state)
    posted = client.post("/api/v1/flags", json={"name": twin, "document": "off"})
    assert posted.status_code == 422
    assert "looks the same as the existing flag 'new_checkout'" in posted.json()["problems"][0]["message"]
    assert client.put(f"/api/v1/flags/{twin}", json={"document": "off"}).status_code == 422
    assert client.patch(f"/api/v1/flags/{twin}", json={"op": "kill"}).status_code == 404
    assert sorted(state.store.load().records) == ["new_checkout"]
    assert _revision(state) == revision


def test_a_stored_name_outside_the_alphabet_stays_readable_and_writable(
    client: TestClient, state: ServerState
) -> None:
    # Written before the alphabet existed (straight into the store): not stranded.
    state.store.put("flag_\u65e5\u672c", '"on"')
    url = "/api/v1/flags/" + quote("flag_\u65e5\u672c")
    assert client.get(url).json()["document"] == "on"
    assert [f["name"] for f in client.get("/api/v1/flags").json()["flags"]] == ["flag_\u65e5\u672c"]
    assert client.put(url, json={"document": 20}, headers={"If-Match": '"1"'}).status_code == 200
    assert client.patch(url, json={"op": "kill"}).json()["state"] == "off"
    # ... and a look-alike of it cannot be created beside it.
    assert (
        client.post("/api/v1/flags", json={"name": "FLAG-\u65e5\u672c", "document": "on"}).status_code == 422
    )


def test_get_missing_flag_is_404(client: TestClient) -> None:
    response = client.get("/api/v1/flags/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_put_creates_then_replaces_with_compare_and_set(client: TestClient) -> None:
    created = client.put("/api/v1/flags/f", json={"document": "on"})
    assert created.status_code == 201
    ok = client.put("/api/v1/flags/f", json={"document": 30}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200
    assert ok.headers["etag"] == '"2"'
    assert ok.json()["changed"] is True
    stale = client.put("/api/v1/flags/f", json={"document": 40}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2
    assert client.get("/api/v1/flags/f").json()["document"] == 30
    weak = client.put("/api/v1/flags/f", json={"document": 40}, headers={"If-Match": 'W/"2"'})
    assert weak.status_code == 200
    assert client.put("/api/v1/flags/f", json={"document": 1}, headers={"If-Match": "v2"}).status_code == 400


def test_invalid_document_is_422_with_problems_and_writes_nothing(client: TestClient) -> None:
    response = client.put("/api/v1/flags/f", json={"document": {"percentage": 150, "userz": ["a"]}})
    assert response.status_code == 422
    paths = {p["path"] for p in response.json()["problems"]}
    assert {"percentage", "userz"} <= paths
    assert client.get("/api/v1/flags/f").status_code == 404


def test_oversize_body_is_413(client: TestClient) -> None:
    big = '{"document": {"users": ["' + "x" * (MAX_DOCUMENT_BYTES + 100 * 1024) + '"]}}'
    response = client.put("/api/v1/flags/f", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert client.get("/api/v1/flags/f").status_code == 404


def test_oversize_body_without_content_length_is_413(app: Starlette, state: ServerState) -> None:
    small = create_app(state.store, token_db=":memory:", settings=Settings(max_body=100))
    try:
        token = make_token(small.state.flagstaff, Permission.WRITE)
        client = TestClient(small, headers={"Authorization": f"Bearer {token}"})

        def chunks() -> Iterator[bytes]:
            yield b'{"document": ["'
            yield b"x" * 200
            yield b'"]}'

        response = client.put(
            "/api/v1/flags/f", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
    finally:
        small.state.flagstaff.close()


def test_delete_with_and_without_if_match(client: TestClient) -> None:
    create(client, "f", "on")
    client.put("/api/v1/flags/f", json={"document": "off"})
    assert client.delete("/api/v1/flags/f", headers={"If-Match": '"1"'}).status_code == 409
    assert client.delete("/api/v1/flags/f", headers={"If-Match": '"2"'}).status_code == 204
    assert client.get("/api/v1/flags/f").status_code == 404
    assert client.delete("/api/v1/flags/f").status_code == 404


# --------------------------------------------------------------------------- list and filters


def test_list_with_filters(client: TestClient, state: ServerState) -> None:
    create(
        client,
        "a",
        {"users": ["x"], "owner": "web", "kind": "temporary", "tags": ["q3"], "description": "Alpha"},
    )
    create(client, "b", "on")
    create(client, "c", "off")
    create(client, "d", {"percentage": 5, "owner": "api", "kind": "permanent"})
    state.store.put("broken", '{"percentage": 500, "owner": "web"}')  # invalid, written out of band
    listed = client.get("/api/v1/flags").json()
    assert [f["name"] for f in listed["flags"]] == ["a", "b", "broken", "c", "d"]
    assert listed["revision"] >= 5
    by_name = {f["name"]: f for f in listed["flags"]}
    assert by_name["a"]["state"] == "partial"
    assert by_name["b"]["state"] == "on"
    assert by_name["c"]["state"] == "off"
    assert by_name["broken"]["state"] == "invalid"
    assert by_name["broken"]["problems"]
    assert by_name["broken"]["owner"] == "web"
    assert by_name["d"]["percentage"] == 5

    def names(**params: str) -> list[str]:
        response = client.get("/api/v1/flags", params=params)
        assert response.status_code == 200, response.text
        return [f["name"] for f in response.json()["flags"]]

    assert names(tag="q3") == ["a"]
    assert names(owner="web") == ["a", "broken"]
    assert names(kind="permanent") == ["d"]
    assert names(state="off") == ["c"]
    assert names(state="invalid") == ["broken"]
    assert names(q="alph") == ["a"]
    assert names(owner="web", state="partial") == ["a"]
    assert client.get("/api/v1/flags", params={"state": "maybe"}).status_code == 400
    assert client.get("/api/v1/flags", params={"tags": "q3"}).status_code == 400


def test_list_archived_include_exclude_only(client: TestClient, state: ServerState) -> None:
    create(client, "live", "on")
    create(client, "old", {"percentage": 5, "archived": True})
    invalid_archived = '{"percentage": 500, "archived": true}'
    state.store.put("broken_old", invalid_archived)  # invalid, archived by its metadata

    def names(**params: str) -> list[str]:
        response = client.get("/api/v1/flags", params=params)
        assert response.status_code == 200, response.text
        return [f["name"] for f in response.json()["flags"]]

    # The default lists archived flags with the rest, as the API did before the parameter.
    assert names() == ["broken_old", "live", "old"]
    assert names(archived="include") == ["broken_old", "live", "old"]
    assert names(archived="exclude") == ["live"]
    assert names(archived="only") == ["broken_old", "old"]
    assert names(archived="only", state="off") == ["old"]  # an archived flag is off for everyone
    # Archiving through the API moves a flag from one list to the other.
    assert client.patch("/api/v1/flags/live", json={"op": "archive"}).status_code == 200
    assert names(archived="exclude") == []
    assert client.patch("/api/v1/flags/old", json={"op": "restore"}).status_code == 200
    assert names(archived="exclude") == ["old"]
    bad = client.get("/api/v1/flags", params={"archived": "all"})
    assert bad.status_code == 400
    assert "'archived' must be one of include, exclude, only" in bad.json()["error"]


def test_stale_temporary_flags(client: TestClient, app: Starlette, state: ServerState, db: Path) -> None:
    create(client, "old_temp", {"users": ["a"], "kind": "temporary"})
    create(client, "old_perm", {"users": ["a"], "kind": "permanent"})
    create(client, "new_temp", {"users": ["a"], "kind": "temporary"})
    # Age two flags' history by 40 days, straight in the database.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE flagstaff_changes SET at = at - 40 * 86400 WHERE name IN ('old_temp', 'old_perm')"
        )
    stale = {f["name"]: f["stale"] for f in client.get("/api/v1/flags").json()["flags"]}
    assert stale == {"old_temp": True, "old_perm": False, "new_temp": False}
    assert [f["name"] for f in client.get("/api/v1/flags?stale=true").json()["flags"]] == ["old_temp"]


# --------------------------------------------------------------------------- patch operations


def patch(client: TestClient, name: str, **body: Any) -> Any:
    response = client.patch(f"/api/v1/flags/{name}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_patch_kill_and_enable_restore_the_flag(client: TestClient) -> None:
    create(client, "f", {"users": ["alice"], "percentage": 20})
    killed = patch(client, "f", op="kill")
    assert killed["state"] == "off"
    assert killed["document"] == {"users": ["alice"], "percentage": 20, "enabled": False}
    enabled = patch(client, "f", op="enable")
    assert enabled["document"] == {"users": ["alice"], "percentage": 20}
    assert patch(client, "f", op="enable", everyone=True)["state"] == "on"


def test_patch_enable_without_targeting_is_refused(client: TestClient) -> None:
    create(client, "f", "off")
    response = client.patch("/api/v1/flags/f", json={"op": "enable"})
    assert response.status_code == 422
    assert "no targeting" in response.json()["error"]


def test_patch_percentage_users_groups_variants(client: TestClient) -> None:
    create(client, "f", {"users": ["alice"]})
    assert patch(client, "f", op="set_percentage", percentage=25)["percentage"] == 25
    assert patch(client, "f", op="add_users", users=["bob", "alice"])["document"]["users"] == ["alice", "bob"]
    assert patch(client, "f", op="remove_users", users=["alice"])["document"]["users"] == ["bob"]
    assert patch(client, "f", op="add_groups", groups=["beta"])["document"]["groups"] == ["beta"]
    assert "groups" not in patch(client, "f", op="remove_groups", groups=["beta"])["document"]
    create(client, "exp", {"experiment": {"everyone": True, "variants": {"a": 10, "b": 10}}})
    weights = patch(client, "exp", op="set_variants", variants={"a": 20, "b": 25})
    assert weights["document"]["experiment"]["variants"] == {"a": 20, "b": 25}


@pytest.mark.parametrize("start", [0, 1, 25, "on", "off", {"groups": ["beta"]}])
def test_patch_makes_the_same_document_as_the_cli(client: TestClient, state: ServerState, start: Any) -> None:
    """One edit, one document: PATCH add_users/kill/enable and the CLI's Admin calls agree."""
    create(client, "api", start)
    create(client, "cli", start)
    admin = Admin(state.store, author="ann@test")
    assert patch(client, "api", op="add_users", users=["bob"])["document"] == decode_document(
        admin.add_user("cli", "bob").after or ""
    )
    assert patch(client, "api", op="kill")["document"] == decode_document(admin.disable("cli").after or "")
    assert patch(client, "api", op="enable")["document"] == decode_document(admin.enable("cli").after or "")


def test_patch_refuses_bad_weights_and_bad_bodies(client: TestClient) -> None:
    create(client, "exp", {"experiment": {"everyone": True, "variants": {"a": 10, "b": 10}}})
    too_much = client.patch("/api/v1/flags/exp", json={"op": "set_variants", "variants": {"a": 60, "b": 30}})
    assert too_much.status_code == 422
    assert too_much.json()["problems"][0]["path"] == "experiment.variants.a"
    assert client.get("/api/v1/flags/exp").json()["version"] == 1
    for body in (
        {"op": "explode"},
        {"op": "set_percentage", "percentage": 101},
        {"op": "add_users", "users": []},
        {"op": "kill", "users": ["x"]},
        {"op": "enable", "everyone": "yes"},
        ["kill"],
    ):
        assert client.patch("/api/v1/flags/exp", json=body).status_code == 400, body


def test_patch_missing_flag_and_stale_if_match(client: TestClient) -> None:
    assert client.patch("/api/v1/flags/nope", json={"op": "kill"}).status_code == 404
    create(client, "f", 10)
    patch(client, "f", op="set_percentage", percentage=20)
    stale = client.patch("/api/v1/flags/f", json={"op": "kill"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2
    fresh = client.patch("/api/v1/flags/f", json={"op": "kill"}, headers={"If-Match": '"2"'})
    assert fresh.status_code == 200
    assert fresh.headers["etag"] == '"3"'


def test_patch_set_percentage_never_creates_a_flag(client: TestClient) -> None:
    # Even with "If-Match: 0" (the flag is expected absent) a PATCH edits, it does not create:
    # creating is POST /flags, so a typo in the name cannot start a new flag.
    for headers in ({}, {"If-Match": '"0"'}):
        answer = client.patch(
            "/api/v1/flags/new_chekout", json={"op": "set_percentage", "percentage": 20}, headers=headers
        )
        assert answer.status_code in (400, 404), headers
    assert client.get("/api/v1/flags/new_chekout").status_code == 404


def test_patch_that_changes_nothing_writes_nothing(client: TestClient) -> None:
    create(client, "f", {"users": ["alice"]})
    same = patch(client, "f", op="add_users", users=["alice"])
    assert same["changed"] is False
    assert same["version"] == 1


# --------------------------------------------------------------------------- validate


def test_validate(client: TestClient) -> None:
    ok = client.post("/api/v1/validate", json={"name": "f", "document": {"percentage": 5}})
    assert ok.json() == {"ok": True, "problems": []}
    bad = client.post("/api/v1/validate", json={"document": {"experiment": {"variants": {"a": 90}}}}).json()
    assert bad["ok"] is False
    assert any(p["path"].startswith("experiment") for p in bad["problems"])
    assert client.get("/api/v1/flags").json()["flags"] == []


# --------------------------------------------------------------------------- history, audit, diff, rollback


def test_each_accepted_write_has_exactly_one_audit_record(client: TestClient) -> None:
    request_ids = []
    for call in (
        lambda: client.post("/api/v1/flags", json={"name": "f", "document": 10}),
        lambda: client.put("/api/v1/flags/f", json={"document": 20}),
        lambda: client.patch("/api/v1/flags/f", json={"op": "kill"}),
        lambda: client.post("/api/v1/flags/f/rollback", json={"version": 1}),
        lambda: client.delete("/api/v1/flags/f"),
    ):
        response = call()
        assert response.status_code < 300, response.text
        request_ids.append(response.headers["x-request-id"])
    # Refused or no-op writes leave no record.
    assert client.put("/api/v1/flags/f", json={"document": {"percentage": -1}}).status_code == 422
    assert client.post("/api/v1/flags", json={"name": "g", "document": 5}).status_code == 201
    assert client.put("/api/v1/flags/g", json={"document": 5}).json()["changed"] is False
    entries = client.get("/api/v1/flags/f/history").json()["entries"]
    assert [e["request_id"] for e in reversed(entries)] == request_ids
    assert [e["action"] for e in reversed(entries)] == ["create", "update", "update", "update", "delete"]
    for entry in entries:
        assert entry["actor"] == "alice"
        assert entry["token_id"] is not None
        assert entry["out_of_band"] is False
        assert entry["at"] > 0
    newest = entries[0]
    assert newest["before"] == 10 and newest["after"] is None
    assert entries[2]["before"] == 20 and entries[2]["after"] == {"enabled": False, "percentage": 20}
    assert len(client.get("/api/v1/flags/g/history").json()["entries"]) == 1


def test_change_made_straight_in_the_store_is_out_of_band(client: TestClient, db: Path) -> None:
    create(client, "f", "on")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE flagstaff_flags SET raw = '\"off\"' WHERE name = 'f'")
    entries = client.get("/api/v1/flags/f/history").json()["entries"]
    assert entries[0]["out_of_band"] is True
    assert entries[0]["author"] is None
    assert entries[0]["after"] == "off"
    assert entries[1]["out_of_band"] is False
    everything = client.get("/api/v1/history").json()["entries"]
    assert everything[0]["name"] == "f" and everything[0]["out_of_band"] is True


def test_history_across_flags_with_limit(client: TestClient) -> None:
    for name in ("a", "b", "c"):
        create(client, name, "on")
    entries = client.get("/api/v1/history", params={"limit": 2}).json()["entries"]
    assert [e["name"] for e in entries] == ["c", "b"]
    assert client.get("/api/v1/history", params={"limit": 0}).status_code == 400
    assert client.get("/api/v1/history", params={"limit": "x"}).status_code == 400


def test_diff_between_versions(client: TestClient) -> None:
    create(client, "f", {"users": ["a"], "percentage": 10})
    client.put("/api/v1/flags/f", json={"document": {"users": ["a", "b"], "groups": ["beta"]}})
    client.patch("/api/v1/flags/f", json={"op": "kill"})
    diff = client.get("/api/v1/flags/f/diff", params={"from": 1, "to": 2}).json()
    assert diff["from"] == {"version": 1, "document": {"users": ["a"], "percentage": 10}}
    assert diff["to"]["version"] == 2
    changes = {c["path"]: c["change"] for c in diff["changes"]}
    assert changes == {"groups": "added", "percentage": "removed", "users": "changed"}
    assert '-  "percentage": 10' in diff["unified"]
    to_current = client.get("/api/v1/flags/f/diff", params={"from": 2}).json()
    assert to_current["to"]["version"] == 3
    assert to_current["changes"] == [{"path": "enabled", "change": "added", "before": None, "after": False}]
    assert client.get("/api/v1/flags/f/diff", params={"from": 9}).status_code == 404
    assert client.get("/api/v1/flags/f/diff").status_code == 400


def test_rollback_to_a_version(client: TestClient) -> None:
    create(client, "f", {"users": ["a"], "percentage": 10})
    client.put("/api/v1/flags/f", json={"document": "off"})
    rolled = client.post("/api/v1/flags/f/rollback", json={"version": 1})
    assert rolled.status_code == 200
    body = rolled.json()
    assert body["document"] == {"users": ["a"], "percentage": 10}
    assert body["version"] == 3
    assert body["rolled_back_to"] == 1
    stale = client.post("/api/v1/flags/f/rollback", json={"version": 2}, headers={"If-Match": '"2"'})
    assert stale.status_code == 409
    assert client.post("/api/v1/flags/f/rollback", json={"version": 7}).status_code == 404
    assert client.post("/api/v1/flags/f/rollback", json={"version": "1"}).status_code == 400


# --------------------------------------------------------------------------- evaluate


def test_evaluate_one_several_and_all_with_reasons(client: TestClient, state: ServerState) -> None:
    create(client, "for_alice", {"users": ["alice"]})
    create(client, "killed", {"users": ["alice"], "enabled": False})
    wait_until(lambda: len(state.client.snapshot) == 2)
    one = client.post("/api/v1/evaluate", json={"flag": "for_alice", "context": {"user_id": "alice"}}).json()
    assert one["decisions"] == {
        "for_alice": {
            "flag": "for_alice",
            "enabled": True,
            "reason": "target",
            "rule": "users",
            "value": True,
        }
    }
    assert one["revision"] >= 2
    several = client.post(
        "/api/v1/evaluate", json={"flags": ["killed", "nope"], "context": {"user_id": "bob"}}
    )
    decisions = several.json()["decisions"]
    assert decisions["killed"]["reason"] == "off"
    assert decisions["nope"]["reason"] == "unknown_flag"
    every = client.post("/api/v1/evaluate", json={"context": {"user_id": "bob"}}).json()["decisions"]
    assert set(every) == {"for_alice", "killed"}
    assert every["for_alice"] == {"flag": "for_alice", "enabled": False, "reason": "default", "value": False}
    assert decisions["nope"]["value"] is None


def test_evaluate_refuses_bad_contexts(client: TestClient) -> None:
    for body in (
        {"context": "alice"},
        {"context": {"groups": "beta"}},
        {"context": {"user_id": 5}},
        {"context": {"logged_in": "yes"}},
        {"flag": "a", "flags": ["b"]},
        {"flags": [1]},
        {"user": "alice"},
    ):
        assert client.post("/api/v1/evaluate", json=body).status_code == 400, body


def test_evaluations_are_counted_in_metrics(client: TestClient, state: ServerState) -> None:
    create(client, "a", "on")
    create(client, "b", "off")
    wait_until(lambda: len(state.client.snapshot) == 2)
    client.post("/api/v1/evaluate", json={})
    client.post("/api/v1/evaluate", json={"flag": "a"})
    text = client.get("/metrics").text
    assert "flagstaff_evaluations_total 3" in text
    assert 'flagstaff_writes_total{action="create"} 2' in text
    assert 'flagstaff_store_state{state="live"} 1' in text
    assert "flagstaff_data_age_seconds 0" in text
    wait_until(lambda: "flagstaff_changes_applied_total 2" in client.get("/metrics").text)


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["state"] == "live"


def test_request_id_is_kept_or_made(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"}).headers["x-request-id"]
    assert made != "bad id\twith junk" and len(made) == 32


def test_openapi_document_lists_every_route(client: TestClient, app: Starlette) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    from starlette.routing import Route

    served = {
        (r.path, m) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"
    }
    api_routes = {(p, m) for p, m in served if p.startswith("/api/") or p in ("/healthz", "/metrics")}
    documented = {(p, m.upper()) for p, ops in paths.items() for m in ops if m != "parameters"}
    assert api_routes == documented
