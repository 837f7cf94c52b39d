"""The user-management API (``/api/v1/users``) over two environments: admin only, hashes
never shown, passwords hashed as the CLI does, disable/enable, roles per environment,
removal; an admin manages only the environments it administers; every change audited;
CSRF for sessions. And ``flagstaff user disable/enable``."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.cli import main
from flagstaff.http.app import Settings, create_app
from flagstaff.http.roles import Permission, Role
from flagstaff.http.users import UserError, UserStore
from tests.http.test_http_teams import PASSWORD, log_in, token

USERS = "/api/v1/users"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    app = create_app(
        {"production": f"sqlite:///{tmp_path}/prod.db", "staging": f"sqlite:///{tmp_path}/staging.db"},
        token_db=str(tmp_path / "flags.db.tokens"),
        settings=Settings(auth_failures=50, auth_penalty=0.05),
    )
    yield app
    app.state.environments.close()


@pytest.fixture
def admin(app: Starlette) -> TestClient:
    return TestClient(app, headers=token(app, Permission.ADMIN))


def users(app: Starlette) -> UserStore:
    store: UserStore = app.state.flagstaff.users
    return store


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [
        (r.__dict__["action"], r.__dict__["user"], r.__dict__["author"])
        for r in caplog.records
        if r.name == "flagstaff.audit" and str(r.__dict__.get("action", "")).startswith("user.")
    ]


def test_create_list_and_read_never_show_a_hash(
    app: Starlette, admin: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flagstaff.audit")
    made = admin.post(USERS, json={"name": "ann", "password": PASSWORD, "roles": {"staging": "editor"}})
    assert made.status_code == 201, made.text
    assert made.json() == {
        "name": "ann",
        "roles": {"staging": "editor"},
        "created_at": made.json()["created_at"],
        "disabled": False,
    }
    listed = admin.get(USERS).json()["users"]
    assert [u["name"] for u in listed] == ["ann"]
    assert admin.get(f"{USERS}/ann").json() == made.json()
    assert admin.get(f"{USERS}/nobody").status_code == 404
    # Hashed as the CLI hashes (scrypt, salted): the password is nowhere in the database or answers.
    with sqlite3.connect(tmp_path / "flags.db.users") as conn:
        stored = conn.execute("SELECT password FROM users WHERE name = 'ann'").fetchone()[0]
    assert stored.startswith("scrypt$16384$8$1$")
    for answer in (made.text, admin.get(USERS).text):
        assert PASSWORD not in answer and "scrypt" not in answer and stored not in answer
    # The new user logs in with it and has the role given.
    browser, headers = log_in(app, "ann")
    ok = browser.put("/api/v1/envs/staging/flags/f", json={"document": "on"}, headers=headers)
    assert ok.status_code == 201
    assert browser.put("/api/v1/flags/f", json={"document": "on"}, headers=headers).status_code == 403
    actions = audit_lines(caplog)
    assert [(a, u) for a, u, _ in actions] == [("user.create", "ann")]
    assert actions[0][2].startswith("t [token ")  # the admin token's name and id, as history has


def test_bad_input_is_refused_and_writes_nothing(admin: TestClient) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"name": "ann", "password": "short"}, 400, "at least 10 characters"),
        ({"name": "ann smith", "password": PASSWORD}, 400, "bad user name"),
        ({"name": "ann\n", "password": PASSWORD}, 400, "bad user name"),
        ({"name": "ann", "password": PASSWORD, "roles": {"qa": "editor"}}, 400, "unknown environment 'qa'"),
        ({"name": "ann", "password": PASSWORD, "roles": {"*": "boss"}}, 400, "unknown scope or role"),
        ({"name": "ann", "password": PASSWORD, "roles": ["editor"]}, 400, "'roles' must be an object"),
        ({"name": "ann", "password": 12345678901}, 400, "must be strings"),
        ({"name": "ann", "password": PASSWORD, "hash": "x"}, 400, "unknown field(s): hash"),
    ]
    for body, status, message in cases:
        answer = admin.post(USERS, json=body)
        assert answer.status_code == status, (body, answer.text)
        assert message in answer.json()["error"], (body, answer.text)
    assert admin.get(USERS).json()["users"] == []
    assert admin.post(USERS, json={"name": "ann", "password": PASSWORD}).status_code == 201
    again = admin.post(USERS, json={"name": "ann", "password": PASSWORD + "!"})
    assert again.status_code == 409 and "already a user named 'ann'" in again.json()["error"]


def test_disable_ends_sessions_and_log_in_until_enabled(
    app: Starlette, admin: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flagstaff.audit")
    users(app).add("ed", PASSWORD, {"*": Role.EDITOR})
    browser, _ = log_in(app, "ed")
    assert browser.get("/api/v1/flags").status_code == 200
    off = admin.patch(f"{USERS}/ed", json={"disabled": True})
    assert off.status_code == 200 and off.json()["disabled"] is True
    assert off.json()["roles"] == {"*": "editor"}  # kept for when it is enabled again
    assert browser.get("/api/v1/flags").status_code == 401  # the session ended at once
    refused = TestClient(app).post("/login", data={"username": "ed", "password": PASSWORD})
    assert refused.status_code == 401
    assert admin.patch(f"{USERS}/ed", json={"disabled": True}).status_code == 200  # idempotent
    on = admin.patch(f"{USERS}/ed", json={"disabled": False})
    assert on.status_code == 200 and on.json()["disabled"] is False
    browser, headers = log_in(app, "ed")
    assert browser.put("/api/v1/flags/x", json={"document": "on"}, headers=headers).status_code == 201
    assert [(a, u) for a, u, _ in audit_lines(caplog)] == [("user.disable", "ed"), ("user.enable", "ed")]
    assert admin.patch(f"{USERS}/ed", json={"disabled": "yes"}).status_code == 400
    assert admin.patch(f"{USERS}/ed", json={}).status_code == 400
    assert admin.patch(f"{USERS}/zed", json={"disabled": True}).status_code == 404


def test_a_disabled_user_cannot_sign_in_through_single_sign_on(app: Starlette) -> None:
    store = users(app)
    store.external("sso@example.com", Role.VIEWER)
    store.set_disabled("sso@example.com", True)
    with pytest.raises(UserError, match="is disabled"):
        store.external("sso@example.com", Role.VIEWER)


def test_roles_per_environment_are_merged_and_null_takes_one_away(
    app: Starlette, admin: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flagstaff.audit")
    users(app).add("ann", PASSWORD, {"*": Role.VIEWER})
    changed = admin.patch(f"{USERS}/ann", json={"roles": {"staging": "editor", "production": "approver"}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["roles"] == {"*": "viewer", "production": "approver", "staging": "editor"}
    browser, headers = log_in(app, "ann")
    assert (
        browser.put("/api/v1/envs/staging/flags/x", json={"document": "on"}, headers=headers).status_code
        == 201
    )
    taken = admin.patch(f"{USERS}/ann", json={"roles": {"staging": None, "*": None}})
    assert taken.json()["roles"] == {"production": "approver"}
    # Effective at the next request: staging is now no access at all.
    assert browser.get("/api/v1/envs/staging/flags").status_code == 403
    # Nothing changed: no audit line.
    assert admin.patch(f"{USERS}/ann", json={"roles": {"staging": None}}).status_code == 200
    roles = [r for r in caplog.records if r.__dict__.get("action") == "user.roles"]
    assert [r.__dict__["changed"] for r in roles] == [
        {"staging": "editor", "production": "approver"},
        {"staging": None, "*": None},
    ]
    bad = admin.patch(f"{USERS}/ann", json={"roles": {"staging": 3}})
    assert bad.status_code == 400 and "a role name or null" in bad.json()["error"]


def test_delete_removes_the_user_and_ends_its_sessions(
    app: Starlette, admin: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flagstaff.audit")
    users(app).add("ann", PASSWORD, {"*": Role.VIEWER})
    browser, _ = log_in(app, "ann")
    assert admin.delete(f"{USERS}/ann").status_code == 204
    assert browser.get("/api/v1/flags").status_code == 401
    assert admin.get(f"{USERS}/ann").status_code == 404
    assert admin.delete(f"{USERS}/ann").status_code == 404
    assert [(a, u) for a, u, _ in audit_lines(caplog)] == [("user.delete", "ann")]


def test_admin_only_and_an_admin_of_staging_manages_staging_only(app: Starlette) -> None:
    users(app).add("prod_person", PASSWORD, {"production": Role.EDITOR})
    users(app).add("stage_person", PASSWORD, {"staging": Role.EDITOR})
    for scope in (Permission.READ, Permission.WRITE, Permission.APPROVE):
        lesser = TestClient(app, headers=token(app, scope))
        assert lesser.get(USERS).status_code == 403
        assert lesser.post(USERS, json={"name": "x", "password": PASSWORD}).status_code == 403
        assert lesser.delete(f"{USERS}/stage_person").status_code == 403
    assert TestClient(app).get(USERS).status_code == 401
    staging_admin = TestClient(app, headers=token(app, Permission.ADMIN, ["staging"]))
    here = "/api/v1/envs/staging/users"
    assert staging_admin.get(USERS).status_code == 403  # not admin in the default environment
    assert [u["name"] for u in staging_admin.get(here).json()["users"]] == ["prod_person", "stage_person"]
    made = staging_admin.post(
        here, json={"name": "new", "password": PASSWORD, "roles": {"staging": "viewer"}}
    )
    assert made.status_code == 201
    for body in ({"roles": {"production": "viewer"}}, {"roles": {"*": "viewer"}}):
        refused = staging_admin.post(here, json={"name": "other", "password": PASSWORD, **body})
        assert refused.status_code == 403 and "needs admin in 'production'" in refused.json()["error"]
        assert staging_admin.patch(f"{here}/new", json=body).status_code == 403
    assert staging_admin.patch(f"{here}/stage_person", json={"disabled": True}).status_code == 200
    assert staging_admin.patch(f"{here}/prod_person", json={"disabled": True}).status_code == 403
    assert staging_admin.delete(f"{here}/prod_person").status_code == 403
    assert staging_admin.delete(f"{here}/stage_person").status_code == 204
    assert users(app).get("prod_person") is not None and not users(app).get("prod_person").disabled  # type: ignore[union-attr]


def test_sessions_need_csrf_and_nobody_disables_or_removes_themselves(app: Starlette) -> None:
    users(app).add("root", PASSWORD, {"*": Role.ADMIN})
    users(app).add("ann", PASSWORD, {"*": Role.VIEWER})
    browser, headers = log_in(app, "root")
    assert browser.get(USERS).status_code == 200  # a read needs no CSRF token
    no_csrf = browser.patch(f"{USERS}/ann", json={"disabled": True})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
    assert users(app).get("ann").disabled is False  # type: ignore[union-attr]
    assert browser.patch(f"{USERS}/ann", json={"disabled": True}, headers=headers).status_code == 200
    for answer in (
        browser.patch(f"{USERS}/root", json={"disabled": True}, headers=headers),
        browser.delete(f"{USERS}/root", headers=headers),
    ):
        assert answer.status_code == 409 and "yourself" in answer.json()["error"]
    assert users(app).get("root") is not None


def test_cli_user_disable_and_enable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = ["--user-db", str(tmp_path / "x.users")]

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        out, err = io.StringIO(), io.StringIO()
        return main([*args, *db], stdout=out, stderr=err), out.getvalue(), err.getvalue()

    assert run("user", "add", "ann", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    code, out, _ = run("user", "disable", "ann")
    assert code == 0 and "disabled 'ann'" in out
    code, out, _ = run("user", "list")
    assert code == 0 and "disabled" in out
    store = UserStore(str(tmp_path / "x.users"))
    try:
        assert store.check_password("ann", PASSWORD) is None
    finally:
        store.close()
    code, out, _ = run("--json", "user", "enable", "ann")
    assert code == 0 and json.loads(out)["disabled"] is False
    code, _, err = run("user", "disable", "zed")
    assert code == 2 and "no user named 'zed'" in err
    code, _, err = run("user", "disable")
    assert code == 2 and "needs a NAME" in err


def test_a_user_table_from_before_disable_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.users"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE users (name TEXT PRIMARY KEY, password TEXT NOT NULL, created_at REAL NOT NULL,"
            " changed_at REAL NOT NULL);"
        )
    store = UserStore(str(path))
    try:
        store.add("ann", PASSWORD)
        assert store.get("ann") is not None and store.set_disabled("ann", True).disabled
    finally:
        store.close()
