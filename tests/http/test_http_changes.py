"""Change requests over the JSON API (a real SQLite store and change database): propose,
approve by someone else, apply with compare-and-set, the stale refusal and its diff,
scheduled apply, reject and cancel, and what --requires-approval refuses and allows."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.changes import ChangeStore, Proposal, SelfApproval, Status, WrongStatus, default_change_db
from flagstaff.http.app import ServerState, Settings, create_app
from flagstaff.http.present import parse_author
from flagstaff.http.tokens import Permission
from tests._support.http_server import make_token

CR = "/api/v1/change-requests"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    settings = Settings(requires_approval=True, schedule_interval=0.05)
    app = create_app(f"sqlite:///{tmp_path}/flags.db", settings=settings)
    app.state.flagstaff.admin.set("checkout", {"percentage": 10, "users": ["qa"]})
    yield app
    app.state.flagstaff.close()


@pytest.fixture
def state(app: Starlette) -> ServerState:
    result: ServerState = app.state.flagstaff
    return result


def client(app: Starlette, scope: Permission, name: str) -> TestClient:
    token = make_token(app.state.flagstaff, scope, name)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def alice(app: Starlette) -> TestClient:
    return client(app, Permission.WRITE, "alice")


@pytest.fixture
def bob(app: Starlette) -> TestClient:
    return client(app, Permission.APPROVE, "bob")


def propose(who: TestClient, document: Any, **extra: Any) -> dict[str, Any]:
    response = who.post(CR, json={"flag": "checkout", "document": document, "comment": "to 50%", **extra})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{CR}/{response.json()['id']}"
    body: dict[str, Any] = response.json()
    return body


def test_direct_writes_are_refused_pointing_at_change_requests(state: ServerState, alice: TestClient) -> None:
    admin = client(alice.app, Permission.ADMIN, "root")  # type: ignore[arg-type]
    for who in (alice, admin):
        for method, path, body in [
            ("PUT", "/api/v1/flags/checkout", {"document": "on"}),
            ("POST", "/api/v1/flags", {"name": "other", "document": "on"}),
            ("PATCH", "/api/v1/flags/checkout", {"op": "set_percentage", "percentage": 50}),
            ("POST", "/api/v1/flags/checkout/rollback", {"version": 1}),
            ("DELETE", "/api/v1/flags/checkout", None),
            ("PUT", "/api/v1/segments/staff", {"document": {"users": ["a"]}}),
        ]:
            response = who.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)
            assert "POST /api/v1/change-requests" in response.json()["error"]
            assert response.json()["change_requests"] == CR
    record = state.store.get("checkout")
    assert record is not None and record.version == 1


def test_the_kill_switch_still_works_and_is_audited(
    state: ServerState, alice: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="flagstaff.audit"):
        response = alice.patch("/api/v1/flags/checkout", json={"op": "kill"})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "off"
    assert any(getattr(r, "action", None) == "kill" and "alice" in r.getMessage() for r in caplog.records)
    entry = state.store.history("checkout", limit=1)[0]
    assert parse_author(entry.author)["actor"] == "alice"
    # ...and un-killing is a change like any other: it needs approval.
    assert alice.patch("/api/v1/flags/checkout", json={"op": "enable"}).status_code == 403


def test_propose_approve_apply(state: ServerState, alice: TestClient, bob: TestClient) -> None:
    change = propose(alice, {"percentage": 50, "users": ["qa"]})
    assert change["status"] == "pending"
    assert change["base_version"] == 1 and change["proposer_name"] == "alice"
    assert change["changes"] == [{"path": "percentage", "change": "changed", "before": 10, "after": 50}]
    # Nothing is written until it is approved and applied.
    assert alice.post(f"{CR}/{change['id']}/apply").status_code == 409
    approved = bob.post(f"{CR}/{change['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["approver_name"] == "bob"
    applied = alice.post(f"{CR}/{change['id']}/apply")
    assert applied.status_code == 200, applied.text
    assert applied.json()["status"] == "applied" and applied.json()["applied_version"] == 2
    record = state.store.get("checkout")
    assert record is not None and json.loads(record.raw) == {"percentage": 50, "users": ["qa"]}
    author = parse_author(state.store.history("checkout", limit=1)[0].author)
    assert author["actor"] == f"alice (approved by bob, change request #{change['id']})"
    assert author["token_id"] is not None
    # Applied once: a second apply is refused, and the listing shows it applied.
    again = alice.post(f"{CR}/{change['id']}/apply")
    assert again.status_code == 409 and again.json()["request_status"] == "applied"
    listed = alice.get(CR, params={"status": "applied"}).json()["change_requests"]
    assert [c["id"] for c in listed] == [change["id"]]


def test_the_proposer_cannot_approve_their_own(app: Starlette, state: ServerState) -> None:
    carol = client(app, Permission.APPROVE, "carol")
    change = propose(carol, "on")
    response = carol.post(f"{CR}/{change['id']}/approve")
    assert response.status_code == 403 and response.json()["code"] == "self_approval"
    assert "someone else must approve it" in response.json()["error"]
    # A second token under the same name is the same person.
    carol_again = client(app, Permission.ADMIN, "Carol")
    assert carol_again.post(f"{CR}/{change['id']}/approve").status_code == 403
    assert state.changes.get(change["id"]).status is Status.PENDING


def test_a_write_token_cannot_approve(alice: TestClient, app: Starlette) -> None:
    change = propose(alice, "on")
    dave = client(app, Permission.WRITE, "dave")
    response = dave.post(f"{CR}/{change['id']}/approve")
    assert response.status_code == 403 and "approve token" in response.json()["error"]


def test_a_stale_proposal_is_refused_with_what_changed(
    state: ServerState, alice: TestClient, bob: TestClient
) -> None:
    change = propose(alice, {"percentage": 50, "users": ["qa"]})
    bob.post(f"{CR}/{change['id']}/approve").raise_for_status()
    # Meanwhile someone kills the flag (allowed), so version 2 is not what was reviewed.
    assert bob.patch("/api/v1/flags/checkout", json={"op": "kill"}).status_code == 200
    assert alice.get(f"{CR}/{change['id']}").json()["stale"] is True
    response = alice.post(f"{CR}/{change['id']}/apply")
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "stale"
    assert "changed after the proposal" in body["error"]
    stale = body["stale"]
    assert stale["base_version"] == 1 and stale["current_version"] == 2
    assert {"path": "enabled", "change": "added", "before": None, "after": False} in stale["changes"]
    assert '+  "enabled": false' in stale["unified"]
    assert [e["version"] for e in stale["changed_by"]] == [2]
    assert "bob" in stale["changed_by"][0]["author"]
    # Nothing was overwritten, and the request is closed as failed.
    record = state.store.get("checkout")
    assert record is not None and record.version == 2 and json.loads(record.raw)["percentage"] == 10
    failed = alice.get(f"{CR}/{change['id']}").json()
    assert failed["status"] == "failed" and "propose again" in failed["note"]


def test_proposing_checks_the_document_and_the_version_seen(alice: TestClient) -> None:
    bad = alice.post(CR, json={"flag": "checkout", "document": {"percentage": 150}})
    assert bad.status_code == 422 and bad.json()["problems"]
    stale = alice.post(CR, json={"flag": "checkout", "document": "on"}, headers={"If-Match": '"7"'})
    assert stale.status_code == 409 and stale.json()["current_version"] == 1
    for apply_at in ("tomorrow", "2026-12-24T09:00:00", -5, True):
        response = alice.post(CR, json={"flag": "checkout", "document": "on", "apply_at": apply_at})
        assert response.status_code == 400, apply_at
    unknown = alice.post(CR, json={"flag": "checkout", "document": "on", "approver": "me"})
    assert unknown.status_code == 400
    assert alice.get(f"{CR}/999").status_code == 404
    assert alice.get(f"{CR}/abc").status_code == 404


def test_a_new_flag_can_be_proposed(state: ServerState, alice: TestClient, bob: TestClient) -> None:
    response = alice.post(CR, json={"flag": "brand_new", "document": "on", "comment": "launch"})
    assert response.status_code == 201 and response.json()["base_version"] == 0
    bob.post(f"{CR}/{response.json()['id']}/approve").raise_for_status()
    assert alice.post(f"{CR}/{response.json()['id']}/apply").status_code == 200
    record = state.store.get("brand_new")
    assert record is not None and record.version == 1


def test_scheduled_change_is_applied_by_the_server(
    state: ServerState, alice: TestClient, bob: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    at = time.time() + 1.0
    change = propose(alice, {"percentage": 25, "users": ["qa"]}, apply_at=at)
    assert change["apply_at"] == pytest.approx(at)
    # Not before it is approved, whatever the time.
    bob.post(f"{CR}/{change['id']}/approve").raise_for_status()
    early = alice.post(f"{CR}/{change['id']}/apply")
    assert early.status_code == 409 and early.json()["code"] == "scheduled"
    with caplog.at_level(logging.INFO, logger="flagstaff.audit"):
        deadline = time.monotonic() + 20
        while state.changes.get(change["id"]).status is not Status.APPLIED:
            assert time.monotonic() < deadline, "the scheduler did not apply the change"
            time.sleep(0.05)
    record = state.store.get("checkout")
    assert record is not None and json.loads(record.raw)["percentage"] == 25
    assert record.version == 2
    done = state.changes.get(change["id"])
    assert done.closed_by == "scheduler" and done.applied_version == 2
    author = parse_author(state.store.history("checkout", limit=1)[0].author)
    assert author["actor"] == f"alice (approved by bob, change request #{change['id']})"
    assert author["request_id"] == f"schedule-{change['id']}"
    assert any(getattr(r, "action", None) == "apply" for r in caplog.records)
    assert time.time() >= at


def test_an_iso_apply_at_is_read_with_its_offset(alice: TestClient) -> None:
    change = propose(alice, "on", apply_at="2030-01-01T10:00:00+02:00")
    assert change["apply_at"] == 1893484800.0


def test_reject_and_cancel(app: Starlette, alice: TestClient, bob: TestClient) -> None:
    first = propose(alice, "on")
    rejected = bob.post(f"{CR}/{first['id']}/reject", json={"reason": "not during the sale"})
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected" and rejected.json()["note"] == "not during the sale"
    assert bob.post(f"{CR}/{first['id']}/approve").status_code == 409
    assert alice.post(f"{CR}/{first['id']}/reject").status_code == 403  # a writer does not reject
    second = propose(alice, "off")
    dave = client(app, Permission.WRITE, "dave")
    assert dave.post(f"{CR}/{second['id']}/cancel").status_code == 403  # not dave's
    cancelled = alice.post(f"{CR}/{second['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert alice.post(f"{CR}/{second['id']}/apply").status_code == 409


def test_read_tokens_read_only(app: Starlette, alice: TestClient) -> None:
    change = propose(alice, "on")
    reader = client(app, Permission.READ, "viewer")
    assert reader.get(CR).status_code == 200
    assert reader.get(f"{CR}/{change['id']}").status_code == 200
    assert reader.post(CR, json={"flag": "checkout", "document": "on"}).status_code == 403
    assert reader.post(f"{CR}/{change['id']}/cancel").status_code == 403


def test_without_requires_approval_direct_writes_still_work(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db")
    try:
        writer = client(app, Permission.WRITE, "w")
        assert writer.post("/api/v1/flags", json={"name": "f", "document": "on"}).status_code == 201
        assert propose(writer, "on")["status"] == "pending"  # proposals work anyway
    finally:
        app.state.flagstaff.close()


# --------------------------------------------------------------------------- the store itself


def test_store_transitions_race_once(tmp_path: Path) -> None:
    store = ChangeStore(str(tmp_path / "x.changes"))
    try:
        change = store.propose(Proposal("f", "on", 3), proposer="token:a", proposer_name="alice")
        with pytest.raises(SelfApproval):
            store.approve(change.id, approver="token:a", approver_name="someone")
        store.approve(change.id, approver="token:b", approver_name="bob")
        assert store.claim(change.id).status is Status.APPLYING
        with pytest.raises(WrongStatus) as info:
            store.claim(change.id)
        assert info.value.status is Status.APPLYING
        assert store.release(change.id).status is Status.APPROVED
        assert store.due(time.time()) == []  # no apply_at: never due
    finally:
        store.close()
    assert default_change_db("/var/lib/flagstaff.db.tokens") == "/var/lib/flagstaff.db.changes"
    assert default_change_db(":memory:") == ":memory:"


def test_a_scheduled_change_on_a_moved_flag_fails_without_writing(
    state: ServerState, alice: TestClient, bob: TestClient
) -> None:
    change = propose(alice, {"percentage": 90, "users": ["qa"]}, apply_at=time.time() + 0.5)
    bob.post(f"{CR}/{change['id']}/approve").raise_for_status()
    assert bob.patch("/api/v1/flags/checkout", json={"op": "kill"}).status_code == 200
    deadline = time.monotonic() + 20
    while state.changes.get(change["id"]).status is Status.APPROVED:
        assert time.monotonic() < deadline, "the scheduler did not look at the change"
        time.sleep(0.05)
    failed = state.changes.get(change["id"])
    assert failed.status is Status.FAILED and failed.closed_by == "scheduler"
    record = state.store.get("checkout")
    assert record is not None and record.version == 2 and json.loads(record.raw)["enabled"] is False


def test_the_flag_page_offers_a_proposal_only_when_approval_is_required(
    app: Starlette, tmp_path: Path
) -> None:
    page = client(app, Permission.WRITE, "w").get("/flags/checkout", headers={"Accept": "text/html"})
    assert page.status_code == 200 and 'id="propose-panel"' in page.text
    assert "Change requests" in page.text  # the header's link
    plain = create_app(f"sqlite:///{tmp_path}/plain.db")
    try:
        plain.state.flagstaff.admin.set("checkout", 10)
        other = client(plain, Permission.WRITE, "w").get("/flags/checkout", headers={"Accept": "text/html"})
        assert other.status_code == 200 and 'id="propose-panel"' not in other.text
        listing = client(plain, Permission.READ, "r").get("/change-requests", headers={"Accept": "text/html"})
        assert listing.status_code == 200 and "No change requests" in listing.text
        missing = client(plain, Permission.READ, "r").get(
            "/change-requests/42", headers={"Accept": "text/html"}
        )
        assert missing.status_code == 404
    finally:
        plain.state.flagstaff.close()


def test_a_change_database_that_cannot_be_opened_is_503_and_nothing_else_breaks(tmp_path: Path) -> None:
    settings = Settings(changes_db=str(tmp_path / "missing" / "dir" / "x.changes"), schedule_interval=0.05)
    app = create_app(f"sqlite:///{tmp_path}/flags.db", settings=settings)
    try:
        writer = client(app, Permission.WRITE, "w")
        assert writer.post("/api/v1/flags", json={"name": "f", "document": "on"}).status_code == 201
        refused = writer.post(CR, json={"flag": "f", "document": "off"})
        assert refused.status_code == 503 and "change request database" in refused.json()["error"]
        assert writer.get(CR).status_code == 503
        time.sleep(0.2)  # the scheduler meets the same error and carries on
    finally:
        app.state.flagstaff.close()
