"""Teams: environments (routing, per-environment tokens, promotion) and users (passwords,
roles per environment, sessions, history authors), through the API and the CLI."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from flagstaff.cli import main
from flagstaff.http import auth
from flagstaff.http.app import Settings, create_app
from flagstaff.http.environments import (
    Environment,
    EnvironmentConfigError,
    check_name,
    load_environments,
    parse_environment,
    split_env_path,
)
from flagstaff.http.roles import Permission, Role
from flagstaff.http.users import UserError, UserStore, hash_password, verify_password
from flagstaff.stores import open_store

PASSWORD = "correct horse battery"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    app = create_app(
        {"production": f"sqlite:///{tmp_path}/prod.db", "staging": f"sqlite:///{tmp_path}/staging.db"},
        token_db=str(tmp_path / "flags.db.tokens"),
        settings=Settings(auth_failures=50, auth_penalty=0.05),
    )
    envs = app.state.environments
    envs.states["production"].admin.set("checkout", {"users": ["a"]})
    envs.states["staging"].admin.set("checkout", {"users": ["a", "b"], "percentage": 10})
    envs.states["staging"].admin.set("search", "on")
    yield app
    envs.close()


def token(app: Starlette, scope: Permission, environments: list[str] | None = None) -> dict[str, str]:
    _, secret = app.state.flagstaff.tokens.create("t", scope, environments=environments)
    return {"Authorization": f"Bearer {secret}"}


def users(app: Starlette) -> UserStore:
    store: UserStore = app.state.flagstaff.users
    return store


def csrf_for(app: Starlette, cookie: str) -> str:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"cookie", f"{auth.COOKIE}={cookie}".encode())],
        "app": app,
    }
    return auth.csrf_token(Request(scope))


def log_in(app: Starlette, name: str, password: str = PASSWORD) -> tuple[TestClient, dict[str, str]]:
    """A browser logged in as ``name`` with the form, and the headers its writes need."""
    browser = TestClient(app)
    answer = browser.post("/login", data={"username": name, "password": password}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    cookie = browser.cookies[auth.COOKIE]
    return browser, {"X-CSRF-Token": csrf_for(app, cookie), "Origin": "http://testserver"}


# --------------------------------------------------------------------------- environments


def test_the_default_environment_keeps_the_usual_urls_and_others_are_under_envs(app: Starlette) -> None:
    client = TestClient(app, headers=token(app, Permission.READ))
    assert client.get("/api/v1/flags/checkout").json()["document"] == {"users": ["a"]}
    staged = client.get("/api/v1/envs/staging/flags/checkout").json()["document"]
    assert staged == {"users": ["a", "b"], "percentage": 10}
    # The dashboard script's form of the same URL, and the default environment by its name.
    assert client.get("/envs/staging/api/v1/flags/checkout").json()["document"] == staged
    assert client.get("/api/v1/envs/production/flags/checkout").json()["document"] == {"users": ["a"]}
    assert [f["name"] for f in client.get("/api/v1/envs/staging/flags").json()["flags"]] == [
        "checkout",
        "search",
    ]
    assert [f["name"] for f in client.get("/api/v1/flags").json()["flags"]] == ["checkout"]
    unknown = client.get("/api/v1/envs/qa/flags")
    assert unknown.status_code == 404 and "production, staging" in unknown.json()["error"]
    bare = client.get("/envs/staging", follow_redirects=False)
    assert bare.status_code == 307 and bare.headers["location"] == "/envs/staging/"
    assert client.get("/envs/staging/healthz").json()["flags"] == 2


def test_environments_can_be_namespaces_of_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flags.db"
    app = create_app({"production": url, "staging": url + "?namespace=staging"})
    envs = app.state.environments
    try:
        client = TestClient(app, headers=token(app, Permission.WRITE))
        assert client.put("/api/v1/envs/staging/flags/f", json={"document": "on"}).status_code == 201
        assert client.get("/api/v1/flags/f").status_code == 404
        assert client.get("/api/v1/envs/staging/flags/f").status_code == 200
        events = [s.events_db for s in envs.states.values()]
        assert events == [f"{tmp_path}/flags.db.events", f"{tmp_path}/flags.db.staging.events"]
    finally:
        envs.close()


def test_listing_environments_gives_the_callers_level_in_each(app: Starlette) -> None:
    client = TestClient(app, headers=token(app, Permission.WRITE, ["staging"]))
    listed = client.get("/api/v1/envs").json()
    assert listed["default"] == "production"
    assert listed["environments"] == [
        {"name": "production", "default": True, "scope": None, "role": None},
        {"name": "staging", "default": False, "scope": "write", "role": "editor"},
    ]


def test_a_token_limited_to_staging_cannot_touch_production(app: Starlette) -> None:
    client = TestClient(app, headers=token(app, Permission.WRITE, ["staging"]))
    refused = client.get("/api/v1/flags")
    assert refused.status_code == 403 and "no access" in refused.json()["error"]
    assert client.put("/api/v1/flags/checkout", json={"document": "off"}).status_code == 403
    assert client.put("/api/v1/envs/staging/flags/checkout", json={"document": "off"}).status_code == 200
    assert app.state.environments.states["production"].store.get("checkout").raw == '{"users":["a"]}'


def test_an_editor_cannot_mint_tokens_and_an_admin_only_within_its_environments(app: Starlette) -> None:
    editor = TestClient(app, headers=token(app, Permission.WRITE))
    assert editor.post("/api/v1/tokens", json={"name": "x", "scope": "admin"}).status_code == 403
    assert editor.post("/api/v1/tokens", json={"name": "x", "scope": "read"}).status_code == 403
    staging_admin = TestClient(app, headers=token(app, Permission.ADMIN, ["staging"]))
    everywhere = staging_admin.post("/api/v1/envs/staging/tokens", json={"name": "x", "scope": "write"})
    assert everywhere.status_code == 403 and "'production'" in everywhere.json()["error"]
    made = staging_admin.post(
        "/api/v1/envs/staging/tokens", json={"name": "ci", "scope": "write", "environments": ["staging"]}
    )
    assert made.status_code == 201 and made.json()["environments"] == ["staging"]
    minted = TestClient(app, headers={"Authorization": f"Bearer {made.json()['token']}"})
    assert minted.get("/api/v1/flags").status_code == 403
    assert minted.get("/api/v1/envs/staging/flags").status_code == 200
    ci_id = made.json()["id"]
    everyone_id = app.state.flagstaff.tokens.create("everyone", Permission.READ)[0].id
    assert staging_admin.delete(f"/api/v1/envs/staging/tokens/{everyone_id}").status_code == 403
    assert staging_admin.delete(f"/api/v1/envs/staging/tokens/{ci_id}").status_code == 200
    bad = staging_admin.post(
        "/api/v1/envs/staging/tokens", json={"name": "x", "scope": "read", "environments": ["qa"]}
    )
    assert bad.status_code == 400 and "qa" in bad.json()["error"]


# --------------------------------------------------------------------------- promotion


def test_promote_shows_the_diff_first_then_writes_with_compare_and_set(app: Starlette) -> None:
    client = TestClient(app, headers=token(app, Permission.WRITE))
    production = app.state.environments.states["production"].store
    url = "/api/v1/envs/staging/flags/checkout/promote?to=production"
    plan = client.post(url)
    assert plan.status_code == 428
    body = plan.json()
    assert body["target_version"] == 1 and body["source_version"] == 1 and body["changed"]
    assert '+  "percentage": 10,' in body["diff"]
    assert {"path": "percentage", "change": "added", "before": None, "after": 10} in body["changes"]
    assert body["blast"] is None and body["blast_note"]  # no event store for these stores
    assert production.get("checkout").version == 1  # nothing written
    assert client.post(url + "&dry_run=true").json()["diff"] == body["diff"]
    done = client.post(url + "&expect=1&source=1")
    assert done.status_code == 200, done.text
    assert done.json()["version"] == 2 and done.json()["environment"] == "production"
    assert json.loads(production.get("checkout").raw) == {"users": ["a", "b"], "percentage": 10}
    # A new flag in the destination: expect=0.
    assert client.post("/api/v1/envs/staging/flags/search/promote?to=production&expect=0").status_code == 200
    assert production.get("search").raw == '"on"'


def test_promote_to_a_destination_changed_since_the_diff_is_refused(app: Starlette) -> None:
    client = TestClient(app, headers=token(app, Permission.WRITE))
    production = app.state.environments.states["production"]
    url = "/api/v1/envs/staging/flags/checkout/promote?to=production"
    seen = client.post(url).json()["target_version"]
    production.admin.set("checkout", {"users": ["a", "hotfix"]})  # someone else, meanwhile
    stale = client.post(f"{url}&expect={seen}")
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2 and '-    "hotfix"' in stale.json()["diff"]
    assert json.loads(production.store.get("checkout").raw) == {"users": ["a", "hotfix"]}
    # A source changed since is refused too.
    app.state.environments.states["staging"].admin.set("checkout", "off")
    assert client.post(f"{url}&expect=2&source=1").status_code == 409
    assert json.loads(production.store.get("checkout").raw) == {"users": ["a", "hotfix"]}


def test_promote_needs_write_in_the_destination(app: Starlette) -> None:
    client = TestClient(app, headers=token(app, Permission.WRITE, ["staging"]))
    refused = client.post("/api/v1/envs/staging/flags/checkout/promote?to=production&expect=1")
    assert refused.status_code == 403 and "production" in refused.json()["error"]
    assert client.post("/api/v1/envs/staging/flags/checkout/promote").status_code == 400  # no ?to=
    same = client.post("/api/v1/envs/staging/flags/checkout/promote?to=staging&expect=1")
    assert same.status_code == 422


def test_cli_promote_shows_the_diff_and_writes(tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path}/s.db", f"sqlite:///{tmp_path}/p.db"
    for url, doc in ((source, {"users": ["x"]}), (target, {"users": ["y"]})):
        store = open_store(url)
        store.put("f", json.dumps(doc))
        store.close()
    envs = tmp_path / "envs.json"
    envs.write_text(json.dumps({"production": target, "staging": source}))
    out, err = io.StringIO(), io.StringIO()
    args = ["promote", "f", "--from", "staging", "--to", "production", "--environments", str(envs)]
    assert main([*args, "--dry-run"], stdout=out, stderr=err) == 0
    assert '-    "y"' in out.getvalue() and '+    "x"' in out.getvalue()
    out = io.StringIO()
    assert main([*args, "--yes", "--author", "dana"], stdout=out, stderr=err) == 0, err.getvalue()
    assert "now version 2" in out.getvalue()
    store = open_store(target)
    try:
        assert json.loads(store.get("f").raw) == {"users": ["x"]}
        assert store.history("f", limit=1)[0].author == "dana"
    finally:
        store.close()
    err = io.StringIO()
    assert main([*args[:4], "--to", "qa", "--env", f"staging={source}"], stdout=out, stderr=err) == 2
    assert "unknown environment 'qa'" in err.getvalue()


# --------------------------------------------------------------------------- users


def test_password_hashes_are_salted_scrypt_and_checked() -> None:
    one, two = hash_password(PASSWORD), hash_password(PASSWORD)
    assert one != two and one.startswith("scrypt$16384$8$1$")
    assert verify_password(PASSWORD, one) and not verify_password(PASSWORD + "x", one)
    assert not verify_password(PASSWORD, "md5$whatever") and not verify_password(PASSWORD, "garbage")


def test_user_store_refuses_bad_input(tmp_path: Path) -> None:
    store = UserStore(str(tmp_path / "u.users"))
    try:
        with pytest.raises(UserError, match="at least"):
            store.add("ann", "short")
        with pytest.raises(UserError, match="bad user name"):
            store.add("ann smith", PASSWORD)
        store.add("ann", PASSWORD, {"staging": Role.EDITOR})
        with pytest.raises(UserError, match="already"):
            store.add("ann", PASSWORD)
        assert store.check_password("ann", PASSWORD) is not None
        assert store.check_password("nobody", PASSWORD) is None
    finally:
        store.close()


def test_roles_per_environment_are_enforced_and_history_names_the_person(app: Starlette) -> None:
    users(app).add("vera", PASSWORD, {"*": Role.VIEWER})
    users(app).add("ed", PASSWORD, {"staging": Role.EDITOR, "*": Role.VIEWER})
    viewer, headers = log_in(app, "vera")
    assert viewer.get("/api/v1/flags").status_code == 200
    refused = viewer.put("/api/v1/flags/checkout", json={"document": "off"}, headers=headers)
    assert refused.status_code == 403 and "editor role" in refused.json()["error"]
    editor, headers = log_in(app, "ed")
    assert editor.put("/api/v1/flags/checkout", json={"document": "off"}, headers=headers).status_code == 403
    ok = editor.put("/api/v1/envs/staging/flags/checkout", json={"document": "off"}, headers=headers)
    assert ok.status_code == 200
    history = editor.get("/api/v1/envs/staging/flags/checkout/history").json()["entries"]
    assert history[0]["actor"] == "ed"
    assert (
        editor.post("/api/v1/tokens", json={"name": "x", "scope": "admin"}, headers=headers).status_code
        == 403
    )
    page = editor.get("/envs/staging/")
    assert "ed (editor)" in page.text and 'aria-label="Environment"' in page.text


def test_a_role_change_or_removal_takes_effect_at_the_next_request(app: Starlette) -> None:
    users(app).add("ed", PASSWORD, {"*": Role.EDITOR})
    editor, headers = log_in(app, "ed")
    assert editor.put("/api/v1/flags/x", json={"document": "on"}, headers=headers).status_code == 201
    users(app).set_role("ed", "*", Role.VIEWER)
    assert editor.put("/api/v1/flags/x", json={"document": "off"}, headers=headers).status_code == 403
    users(app).remove("ed")
    assert editor.get("/api/v1/flags").status_code == 401


def test_password_login_refuses_a_wrong_password_and_logout_ends_the_session(app: Starlette) -> None:
    users(app).add("ann", PASSWORD, {"*": Role.ADMIN})
    browser = TestClient(app)
    form = browser.get("/login")
    assert 'name="username"' in form.text and 'name="token"' in form.text
    wrong = browser.post("/login", data={"username": "ann", "password": "wrong password!"})
    assert wrong.status_code == 401 and "wrong password" in wrong.text
    unknown = browser.post("/login", data={"username": "zed", "password": PASSWORD})
    assert unknown.status_code == 401 and unknown.text == wrong.text
    browser, headers = log_in(app, "ann")
    cookie = browser.cookies[auth.COOKIE]
    assert cookie.startswith("u.")
    assert browser.get("/").status_code == 200
    out = browser.post("/logout", data={"csrf_token": headers["X-CSRF-Token"]}, follow_redirects=False)
    assert out.status_code == 303
    stolen = TestClient(app, cookies={auth.COOKIE: cookie})
    assert stolen.get("/api/v1/flags").status_code == 401


def test_one_login_serves_every_environment(app: Starlette) -> None:
    users(app).add("ann", PASSWORD, {"*": Role.VIEWER})
    browser = TestClient(app)
    answer = browser.post(
        "/envs/staging/login", data={"username": "ann", "password": PASSWORD}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/envs/staging/"
    assert "Path=/;" in answer.headers["set-cookie"] or answer.headers["set-cookie"].endswith("Path=/")
    assert browser.get("/api/v1/flags").status_code == 200
    assert browser.get("/envs/staging/api/v1/flags").status_code == 200


def test_cli_user_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = ["--user-db", str(tmp_path / "x.users")]

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        out, err = io.StringIO(), io.StringIO()
        return main([*args, *db], stdout=out, stderr=err), out.getvalue(), err.getvalue()

    assert run("user", "add", "ann", "--role", "editor", "--env", "staging", "--password-stdin",
               stdin=PASSWORD + "\n")[0] == 0  # fmt: skip
    assert run("user", "role", "ann", "viewer")[0] == 0
    code, out, _ = run("--json", "user", "list")
    assert code == 0 and json.loads(out) == [
        {
            "name": "ann",
            "roles": {"*": "viewer", "staging": "editor"},
            "created_at": json.loads(out)[0]["created_at"],
            "disabled": False,
        }
    ]
    assert run("user", "role", "ann", "none", "--env", "staging")[0] == 0
    code, _, err = run("user", "role", "ann", "boss")
    assert code == 2 and "unknown scope or role" in err
    code, _, err = run("user", "role", "ann", "viewer", "--env", "Bad Env")
    assert code == 2 and "bad environment name" in err
    code, _, err = run("user", "add", "bob", "--password-stdin", stdin="short\n")
    assert code == 2 and "at least" in err
    assert run("user", "passwd", "ann", "--password-stdin", stdin="another long password\n")[0] == 0
    store = UserStore(str(tmp_path / "x.users"))
    try:
        ann = store.check_password("ann", "another long password")
        assert ann is not None and ann.roles == (("*", Role.VIEWER),)
    finally:
        store.close()
    assert run("user", "remove", "ann")[0] == 0
    assert run("user", "remove", "ann")[0] == 2


# --------------------------------------------------------------------------- configuration


def test_environment_options_and_files(tmp_path: Path) -> None:
    assert parse_environment("staging=sqlite:///s.db") == Environment("staging", "sqlite:///s.db")
    for bad in ("staging", "Staging=x", "=x", "a="):
        with pytest.raises(EnvironmentConfigError):
            parse_environment(bad)
    with pytest.raises(EnvironmentConfigError, match="bad environment name"):
        check_name("prod\n")  # a trailing newline is not part of a name
    path = tmp_path / "envs.json"
    path.write_text('[{"name": "dev", "url": "memory://"}, {"name": "prod", "url": "memory://"}]')
    assert [e.name for e in load_environments(str(path))] == ["dev", "prod"]
    path.write_text('{"dev": "memory://", "dev2": 3}')
    with pytest.raises(EnvironmentConfigError, match="dev2"):
        load_environments(str(path))
    path.write_text("[1]")
    with pytest.raises(EnvironmentConfigError, match="expected an object"):
        load_environments(str(path))
    assert split_env_path("/api/v1/envs/qa/flags/x") == ("qa", "/api/v1/flags/x")
    assert split_env_path("/envs/qa/flags/x") == ("qa", "/flags/x")
    assert split_env_path("/api/v1/envs") is None


def test_permission_levels_have_one_order_and_two_vocabularies() -> None:
    assert Permission.READ < Permission.WRITE < Permission.APPROVE < Permission.ADMIN
    assert Role.EDITOR is Permission.WRITE and Role.APPROVER is Permission.APPROVE
    assert [p.label for p in Permission] == ["read", "write", "approve", "admin"]
    assert [p.role for p in Permission] == ["viewer", "editor", "approver", "admin"]
    assert Permission.parse("Approver") is Permission.parse("approve")


def test_promote_counts_the_blast_radius_in_the_destination(tmp_path: Path) -> None:
    from flagstaff.exposures import Event, EventKind, SQLiteSink
    from flagstaff.testing import wait_until

    app = create_app({"production": f"sqlite:///{tmp_path}/p.db", "staging": f"sqlite:///{tmp_path}/s.db"})
    envs = app.state.environments
    try:
        production = envs.states["production"]
        production.admin.set("checkout", {"percentage": 0})
        envs.states["staging"].admin.set("checkout", {"percentage": 100})
        sink = SQLiteSink(f"{tmp_path}/p.db.events")
        sink.write([Event(EventKind.EXPOSURE, time.time() - 60, f"u{i}", "checkout") for i in range(200)])
        sink.close()
        wait_until(lambda: production.client.snapshot.get("checkout") is not None)
        client = TestClient(app, headers=token(app, Permission.WRITE))
        plan = client.post("/api/v1/envs/staging/flags/checkout/promote?to=production&dry_run=true").json()
        assert plan["blast"]["units"] == 200 and plan["blast"]["off_to_on"] == 200
        assert plan["blast_note"] is None
    finally:
        envs.close()


def test_flagstaff_serve_with_environments(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import httpx2

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTAFF_")}
    (tmp_path / "envs.json").write_text(json.dumps({"production": "sqlite:///prod.db"}))
    out = io.StringIO()
    assert main(["--store", f"sqlite:///{tmp_path}/prod.db", "token", "create", "ci", "--scope", "write",
                 "--env", "staging", "--json"], stdout=out) == 0  # fmt: skip
    secret = json.loads(out.getvalue())["token"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flagstaff", "--store", "sqlite:///prod.db", "serve", "--port", "0",
         "--environments", "envs.json", "--env", "staging=sqlite:///staging.db"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base = line.split()[1]
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx2.Client(base_url=base, headers=headers, timeout=10) as client:
            listed = client.get("/api/v1/envs").json()["environments"]
            assert [(e["name"], e["scope"]) for e in listed] == [("production", None), ("staging", "write")]
            assert client.put("/api/v1/envs/staging/flags/f", json={"document": "on"}).status_code == 201
            assert client.get("/api/v1/flags/f").status_code == 403
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "Environments: production (default)" in err
    store = open_store(f"sqlite:///{tmp_path}/staging.db")
    try:
        assert store.get("f") is not None
    finally:
        store.close()


def test_environments_under_a_host_app_prefix(app: Starlette) -> None:
    from starlette.routing import Mount

    host = Starlette(routes=[Mount("/flags", app=app)])
    client = TestClient(host, headers=token(app, Permission.READ))
    assert client.get("/flags/api/v1/envs/staging/flags/search").json()["document"] == "on"
    assert client.get("/flags/envs/staging/api/v1/flags/search").status_code == 200
    page = client.get("/flags/envs/staging/", headers={"Accept": "text/html"})
    assert 'href="/flags/envs/staging/"' in page.text and 'href="/flags/" data-env="production"' in page.text


def test_change_requests_four_eyes_between_users_in_an_environment(app: Starlette) -> None:
    users(app).add("ann", PASSWORD, {"staging": Role.EDITOR})
    users(app).add("bob", PASSWORD, {"staging": Role.APPROVER})
    ann, ann_headers = log_in(app, "ann")
    bob, bob_headers = log_in(app, "bob")
    base = "/api/v1/envs/staging/change-requests"
    proposed = ann.post(base, json={"flag": "search", "document": "off"}, headers=ann_headers)
    assert proposed.status_code == 201, proposed.text
    change_id = proposed.json()["id"]
    assert ann.post(f"{base}/{change_id}/approve", json={}, headers=ann_headers).status_code == 403
    approved = bob.post(f"{base}/{change_id}/approve", json={}, headers=bob_headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["approver_name"] == "bob"
    # Change requests belong to their environment: production has none.
    assert bob.get("/api/v1/change-requests").status_code == 403  # bob has no role in production
    admin = TestClient(app, headers=token(app, Permission.ADMIN))
    assert admin.get("/api/v1/change-requests").json()["change_requests"] == []


def test_password_guesses_count_against_the_rate_limits(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db", settings=Settings(auth_failures=3, auth_penalty=0.01))
    try:
        users(app).add("ann", PASSWORD, {"*": Role.VIEWER})
        browser = TestClient(app)
        answers = [
            browser.post("/login", data={"username": "ann", "password": f"guess number {i}"}).status_code
            for i in range(5)
        ]
        assert answers[:3] == [401, 401, 401] and answers[3:] == [429, 429]
        # The right password is never refused, limits or not.
        ok = browser.post("/login", data={"username": "ann", "password": PASSWORD}, follow_redirects=False)
        assert ok.status_code == 303
    finally:
        app.state.environments.close()


def test_a_page_of_an_environment_without_access_says_so_in_html(app: Starlette) -> None:
    users(app).add("sam", PASSWORD, {"staging": Role.VIEWER})
    browser, _ = log_in(app, "sam")
    page = browser.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "has no access" in page.text and 'name="password"' in page.text
    assert browser.get("/envs/staging/", headers={"Accept": "text/html"}).status_code == 200
    assert browser.get("/api/v1/flags").json()["error"].startswith("'sam' has no access")


# --------------------------------------------------------------------------- approval per environment


def test_one_environment_can_require_approval_while_another_does_not(tmp_path: Path) -> None:
    app = create_app(
        {"production": f"sqlite:///{tmp_path}/p.db", "staging": f"sqlite:///{tmp_path}/s.db"},
        token_db=str(tmp_path / "flags.db.tokens"),
        settings=Settings(approval_environments=frozenset({"production"})),
    )
    try:
        headers = token(app, Permission.ADMIN)
        api = TestClient(app)
        doc = {"percentage": 5}
        staging = api.put("/api/v1/envs/staging/flags/checkout", json={"document": doc}, headers=headers)
        assert staging.status_code in (200, 201), staging.text
        production = api.put(
            "/api/v1/envs/production/flags/checkout", json={"document": doc}, headers=headers
        )
        assert production.status_code == 403 and "change-requests" in production.text
        default = api.put("/api/v1/flags/checkout", json={"document": doc}, headers=headers)  # the default
        assert default.status_code == 403
        proposed = api.post(
            "/api/v1/envs/production/change-requests",
            json={"flag": "checkout", "document": doc, "comment": "ramp"},
            headers=headers,
        )
        assert proposed.status_code in (200, 201), proposed.text
    finally:
        app.state.environments.close()


def test_the_environments_file_marks_environments_that_require_approval(tmp_path: Path) -> None:
    path = tmp_path / "envs.json"
    path.write_text(
        json.dumps(
            [
                {"name": "production", "url": "sqlite:///p.db", "requires_approval": True},
                {"name": "staging", "url": "sqlite:///s.db"},
            ]
        )
    )
    envs = load_environments(str(path))
    assert [(e.name, e.requires_approval) for e in envs] == [("production", True), ("staging", False)]
    path.write_text(json.dumps([{"name": "production", "url": "sqlite:///p.db", "requires_approval": "yes"}]))
    with pytest.raises(EnvironmentConfigError, match="requires_approval must be true or false"):
        load_environments(str(path))


def test_serve_refuses_approval_for_an_unknown_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--store", "memory://", "serve", "--env", "prod=memory://", "--approval-env", "prodd"])
    assert code == 2
    assert "no environment named prodd" in capsys.readouterr().err


# --------------------------------------------------------------------------- comments required


def test_an_environment_can_require_a_comment_with_every_change(tmp_path: Path) -> None:
    app = create_app(
        {"production": f"sqlite:///{tmp_path}/p.db", "staging": f"sqlite:///{tmp_path}/s.db"},
        token_db=str(tmp_path / "flags.db.tokens"),
        settings=Settings(comment_environments=frozenset({"production"})),
    )
    try:
        headers = token(app, Permission.ADMIN)
        api = TestClient(app)
        prod = "/api/v1/envs/production"
        body = {"document": {"percentage": 5}}
        assert api.put("/api/v1/envs/staging/flags/checkout", json=body, headers=headers).status_code == 201
        refused = api.put(f"{prod}/flags/checkout", json=body, headers=headers)
        assert refused.status_code == 422 and refused.json()["code"] == "comment_required"
        assert "say why in 'comment'" in refused.json()["error"]
        assert app.state.environments.states["production"].store.get("checkout") is None  # nothing written
        made = api.put(
            f"{prod}/flags/checkout", json={**body, "comment": "ramp for the launch"}, headers=headers
        )
        assert made.status_code == 201, made.text
        history = api.get(f"{prod}/flags/checkout/history", headers=headers).json()
        entries = history["entries"] if isinstance(history, dict) else history
        assert entries[0]["comment"] == "ramp for the launch"
        # The kill switch never waits for words.
        killed = api.patch(f"{prod}/flags/checkout", json={"op": "kill"}, headers=headers)
        assert killed.status_code == 200, killed.text
        # Segments, deletes and change requests ask the same.
        seg = api.put(f"{prod}/segments/staff", json={"document": {"users": ["a"]}}, headers=headers)
        assert seg.status_code == 422
        seg = api.put(
            f"{prod}/segments/staff", json={"document": {"users": ["a"]}, "comment": "staff"}, headers=headers
        )
        assert seg.status_code == 201, seg.text
        assert api.delete(f"{prod}/segments/staff", headers=headers).status_code == 422
        assert api.delete(f"{prod}/segments/staff?comment=unused", headers=headers).status_code == 204
        proposal = {"flag": "checkout", "document": {"percentage": 10}}
        assert api.post(f"{prod}/change-requests", json=proposal, headers=headers).status_code == 422
    finally:
        app.state.environments.close()


def test_the_environments_file_marks_environments_that_require_a_comment(tmp_path: Path) -> None:
    path = tmp_path / "envs.json"
    path.write_text(json.dumps([{"name": "production", "url": "sqlite:///p.db", "requires_comment": True}]))
    assert load_environments(str(path))[0].requires_comment is True
    code = main(["--store", "memory://", "serve", "--env", "prod=memory://", "--comment-env", "staging"])
    assert code == 2


def test_token_and_client_key_changes_are_audited_without_their_secrets(
    app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flagstaff.audit")
    admin = TestClient(app, headers=token(app, Permission.ADMIN))
    admin_id = app.state.flagstaff.tokens.list()[-1].id
    made = admin.post("/api/v1/tokens", json={"name": "ci", "scope": "write", "environments": ["staging"]})
    assert made.status_code == 201
    assert admin.delete(f"/api/v1/tokens/{made.json()['id']}").status_code == 200
    key = admin.post("/api/v1/envs/staging/client-keys", json={"name": "web"})
    assert key.status_code == 201
    assert admin.delete(f"/api/v1/envs/staging/client-keys/{key.json()['id']}").status_code == 200
    assert admin.delete("/api/v1/tokens/nope").status_code == 404  # nothing revoked: no line
    lines = [r for r in caplog.records if r.name == "flagstaff.audit"]
    assert [
        (r.__dict__["action"], r.__dict__.get("token") or r.__dict__.get("client_key")) for r in lines
    ] == [
        ("token.create", made.json()["id"]),
        ("token.revoke", made.json()["id"]),
        ("client_key.create", key.json()["id"]),
        ("client_key.revoke", key.json()["id"]),
    ]
    assert all(r.__dict__["author"].startswith(f"t [token {admin_id}, request ") for r in lines)
    assert lines[0].__dict__["scope"] == "write" and lines[0].__dict__["environments"] == ["staging"]
    assert lines[2].__dict__["environment"] == "staging"
    for secret in (made.json()["token"], key.json()["key"]):
        assert all(secret not in r.getMessage() and secret not in repr(r.__dict__) for r in lines)
