"""Client-side evaluation over the API: only client-visible flags, only decisions; public
client keys that open nothing else; ETag/304; CORS; rate limits per address and per key;
the client-key API and CLI."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff.cli import main
from flagstaff.errors import ValidationError
from flagstaff.http.app import Settings, create_app
from flagstaff.http.clientside import ClientKeyStore, ClientSide, TokenBuckets
from flagstaff.http.tokens import Permission
from flagstaff.model import parse_flag
from tests._support.http_server import make_token

EVAL = "/api/v1/client/evaluate"
FLAGS: dict[str, Any] = {
    "new_header": {"client_visible": True, "users": ["alice"]},
    "banner": {
        "client_visible": True,
        "variants": ["blue", "green"],
        "values": {"blue": {"color": "#00f"}, "green": {"color": "#0f0"}},
        "percentage": 100,
    },
    "secret_pricing": {"users": ["alice"], "description": "server-side only"},
}


def settle(state: Any) -> None:
    """Until the server's client has seen every write made so far."""
    revision = state.store.load().revision
    deadline = time.monotonic() + 20
    while state.client.snapshot.revision < revision:
        assert time.monotonic() < deadline, "the server's client did not catch up"
        time.sleep(0.01)


def make_app(tmp_path: Path, clientside: ClientSide | None = None) -> Starlette:
    settings = Settings(clientside=clientside or ClientSide(origins=("https://app.example.com",)))
    app = create_app(f"sqlite:///{tmp_path}/flags.db", settings=settings)
    for name, document in FLAGS.items():
        app.state.flagstaff.admin.set(name, document)
    settle(app.state.flagstaff)
    return app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    app = make_app(tmp_path)
    yield app
    app.state.flagstaff.close()


@pytest.fixture
def key(app: Starlette) -> str:
    _, key = app.state.flagstaff.client_keys.create("web")
    return key


def browser(app: Starlette, key: str, **headers: str) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {key}", **headers})


def test_client_visible_is_a_validated_boolean() -> None:
    assert parse_flag("f", {"users": ["a"]}).client_visible is False
    assert parse_flag("f", {"users": ["a"], "client_visible": True}).client_visible is True
    with pytest.raises(ValidationError) as info:
        parse_flag("f", {"client_visible": "yes"})
    assert info.value.problems[0].path == "client_visible"


def test_only_client_visible_flags_and_only_decisions(app: Starlette, key: str) -> None:
    c = browser(app, key)
    alice = c.post(EVAL, json={"context": {"user_id": "alice"}})
    assert alice.status_code == 200, alice.text
    flags = alice.json()["flags"]
    assert set(flags) == {"new_header", "banner"}  # never secret_pricing
    assert flags["new_header"] == {"enabled": True, "variant": None, "value": True}
    assert flags["banner"]["variant"] in ("blue", "green")
    assert flags["banner"]["value"] == FLAGS["banner"]["values"][flags["banner"]["variant"]]
    assert set(alice.json()) == {"flags"}  # no revision, document, reason or rule
    bob = c.get(EVAL, params={"context": json.dumps({"user_id": "bob"})}).json()["flags"]
    assert bob["new_header"]["enabled"] is False
    assert c.get(EVAL).json()["flags"]["new_header"]["enabled"] is False  # no context: anonymous
    assert c.get(EVAL, params={"context": "{nope"}).status_code == 400
    assert c.post(EVAL, json={"context": {"groups": "beta"}}).status_code == 400


def test_a_client_key_opens_nothing_else_and_a_token_not_this(app: Starlette, key: str) -> None:
    c = browser(app, key)
    for method, path, body in [
        ("GET", "/api/v1/flags", None),
        ("GET", "/api/v1/flags/secret_pricing", None),
        ("GET", "/api/v1/flags/new_header/history", None),
        ("POST", "/api/v1/evaluate", {"flag": "secret_pricing"}),
        ("GET", "/api/v1/history", None),
    ]:
        assert c.request(method, path, json=body).status_code == 401, path
    token = make_token(app.state.flagstaff, Permission.ADMIN)
    assert TestClient(app).get(EVAL, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert TestClient(app).get(EVAL).status_code == 401
    info = app.state.flagstaff.client_keys.verify(key)
    app.state.flagstaff.client_keys.revoke(info.id)
    assert c.get(EVAL).status_code == 401  # revoked: at once


def test_etag_and_304_until_a_decision_changes(app: Starlette, key: str) -> None:
    c = browser(app, key)
    first = c.get(EVAL)
    tag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    again = c.get(EVAL, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.headers["etag"] == tag and again.content == b""
    # A change to a flag the client cannot see changes nothing it can.
    state = app.state.flagstaff
    state.admin.set("secret_pricing", "off")
    settle(state)
    assert c.get(EVAL, headers={"If-None-Match": tag}).status_code == 304
    state.admin.set("new_header", {"client_visible": True, "users": ["alice"], "groups": ["beta"]})
    settle(state)
    assert c.get(EVAL, headers={"If-None-Match": tag}).status_code == 304  # same decisions for anonymous
    state.admin.set("new_header", {"client_visible": True, "enabled": "on"})
    settle(state)
    changed = c.get(EVAL, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag


def test_cors_for_allowed_origins_only(app: Starlette, key: str) -> None:
    allowed = browser(app, key, Origin="https://app.example.com").get(EVAL)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "ETag" in allowed.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in allowed.headers
    other = browser(app, key, Origin="https://evil.example").get(EVAL)
    assert "access-control-allow-origin" not in other.headers
    preflight = TestClient(app).options(
        EVAL,
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    assert "POST" in preflight.headers["access-control-allow-methods"]
    refused = TestClient(app).options(EVAL, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in refused.headers
    # Errors carry CORS headers too, so a page can read why.
    unauthorized = TestClient(app, headers={"Origin": "https://app.example.com"}).get(EVAL)
    assert unauthorized.status_code == 401 and unauthorized.headers["access-control-allow-origin"]


def test_rate_limited_per_address_and_per_key(tmp_path: Path) -> None:
    app = make_app(tmp_path, ClientSide(address_rate=0.01, address_burst=3, key_rate=100, key_burst=100))
    try:
        _, key = app.state.flagstaff.client_keys.create("web")
        c = browser(app, key)
        assert [c.get(EVAL).status_code for _ in range(3)] == [200, 200, 200]
        limited = c.get(EVAL)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # Made-up keys from the address are stopped before any lookup, the same way.
        assert browser(app, "fsc_00000000_" + "x" * 43).get(EVAL).status_code == 429
    finally:
        app.state.flagstaff.close()
    (tmp_path / "k").mkdir()
    app = make_app(
        tmp_path / "k", ClientSide(address_rate=100, address_burst=100, key_rate=0.01, key_burst=2)
    )
    try:
        _, key = app.state.flagstaff.client_keys.create("web")
        _, other = app.state.flagstaff.client_keys.create("other app")
        assert [browser(app, key).get(EVAL).status_code for _ in range(3)] == [200, 200, 429]
        assert browser(app, other).get(EVAL).status_code == 200  # its own bucket
    finally:
        app.state.flagstaff.close()


def test_token_buckets_refill_at_their_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=2.0, limit=2)
    assert buckets.take("a", now=0.0) == 0.0
    assert buckets.take("a", now=0.0) == 0.0
    assert buckets.take("a", now=0.0) == pytest.approx(0.5)
    assert buckets.take("a", now=0.5) == 0.0  # one token back after 1/rate seconds
    buckets.take("b", now=0.5)
    buckets.take("c", now=0.5)  # past the limit: "a" is forgotten
    assert buckets.take("a", now=0.5) == 0.0


def test_client_keys_api_is_admin_only_and_keys_are_stored_hashed(app: Starlette, tmp_path: Path) -> None:
    admin = TestClient(
        app, headers={"Authorization": f"Bearer {make_token(app.state.flagstaff, Permission.ADMIN)}"}
    )
    writer = TestClient(
        app, headers={"Authorization": f"Bearer {make_token(app.state.flagstaff, Permission.WRITE)}"}
    )
    assert writer.post("/api/v1/client-keys", json={"name": "x"}).status_code == 403
    created = admin.post("/api/v1/client-keys", json={"name": "ios app"})
    assert created.status_code == 201 and created.json()["key"].startswith("fsc_")
    listed = admin.get("/api/v1/client-keys").json()["client_keys"]
    assert [k["name"] for k in listed] == ["ios app"] and "key" not in listed[0]
    assert browser(app, created.json()["key"]).get(EVAL).status_code == 200
    revoked = admin.delete(f"/api/v1/client-keys/{created.json()['id']}")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert browser(app, created.json()["key"]).get(EVAL).status_code == 401
    assert admin.delete("/api/v1/client-keys/nope").status_code == 404
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("flags.db.tokens*"))
    assert created.json()["key"].encode() not in raw


def test_client_key_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flags.db"
    out, err = io.StringIO(), io.StringIO()
    assert main(["--store", url, "client-key", "create", "web"], stdout=out, stderr=err) == 0
    key = out.getvalue().strip()
    store = ClientKeyStore(str(tmp_path / "flags.db.tokens"))
    try:
        info = store.verify(key)
        assert info is not None and info.name == "web"
    finally:
        store.close()
    out = io.StringIO()
    assert main(["--store", url, "--json", "client-key", "list"], stdout=out, stderr=err) == 0
    assert json.loads(out.getvalue())[0]["active"] is True
    assert main(["--store", url, "client-key", "revoke", info.id], stdout=io.StringIO(), stderr=err) == 0
    assert main(["--store", url, "client-key", "revoke", "nope"], stdout=io.StringIO(), stderr=err) == 2
    assert main(["--store", url, "client-key", "create"], stdout=io.StringIO(), stderr=err) == 2


# --------------------------------------------------------------------------- keys per environment


@pytest.fixture
def two_envs(tmp_path: Path) -> Iterator[Starlette]:
    app = create_app(
        {"production": f"sqlite:///{tmp_path}/prod.db", "staging": f"sqlite:///{tmp_path}/staging.db"},
        token_db=str(tmp_path / "flags.db.tokens"),
    )
    envs = app.state.environments
    envs.states["production"].admin.set("banner", {"client_visible": True, "percentage": 0})
    envs.states["staging"].admin.set("banner", {"client_visible": True, "percentage": 100})
    envs.states["staging"].admin.set("staging_only", {"client_visible": True, "everyone": True})
    for state in envs.states.values():
        settle(state)
    yield app
    envs.close()


def _evaluate(app: Starlette, key: str, env: str | None) -> Any:
    path = EVAL if env is None else f"/api/v1/envs/{env}/client/evaluate"
    return browser(app, key).post(path, json={"context": {"user_id": "u1"}})


def test_a_key_evaluates_only_the_environment_it_was_made_for(two_envs: Starlette) -> None:
    admin = {"Authorization": f"Bearer {make_token(two_envs.state.flagstaff, Permission.ADMIN)}"}
    api = TestClient(two_envs, headers=admin)
    made = api.post("/api/v1/envs/staging/client-keys", json={"name": "staging app"})
    assert made.status_code == 201, made.text
    assert made.json()["environment"] == "staging"
    staging_key = made.json()["key"]
    answer = _evaluate(two_envs, staging_key, "staging")
    assert answer.status_code == 200, answer.text
    assert answer.json()["flags"] == {
        "banner": {"enabled": True, "variant": None, "value": True},
        "staging_only": {"enabled": True, "variant": None, "value": True},
    }
    for elsewhere in ("production", None):  # by name, and the default environment's usual URL
        refused = _evaluate(two_envs, staging_key, elsewhere)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert "this client key is for environment 'staging', not 'production'" in error
        assert "/api/v1/envs/production/client-keys" in error
        assert "flags" not in refused.json()
    # A production key made at the usual URL is production's, and refused in staging.
    prod = api.post("/api/v1/client-keys", json={"name": "web"}).json()
    assert prod["environment"] == "production"
    assert _evaluate(two_envs, prod["key"], None).json()["flags"] == {
        "banner": {"enabled": False, "variant": None, "value": False}
    }
    assert _evaluate(two_envs, prod["key"], "staging").status_code == 403
    # Each environment lists and revokes its own keys only.
    listed = api.get("/api/v1/envs/staging/client-keys").json()["client_keys"]
    assert [k["name"] for k in listed] == ["staging app"]
    assert [k["name"] for k in api.get("/api/v1/client-keys").json()["client_keys"]] == ["web"]
    assert api.delete(f"/api/v1/envs/staging/client-keys/{prod['id']}").status_code == 404
    assert _evaluate(two_envs, prod["key"], None).status_code == 200  # not revoked by that
    assert api.delete(f"/api/v1/client-keys/{prod['id']}").status_code == 200
    assert _evaluate(two_envs, prod["key"], None).status_code == 401


def test_a_key_without_an_environment_is_the_default_ones(two_envs: Starlette) -> None:
    # As made before keys had an environment (and by `client-key create` without --env).
    info, key = two_envs.state.flagstaff.client_keys.create("old app")
    assert info.environment is None
    assert _evaluate(two_envs, key, None).status_code == 200
    assert _evaluate(two_envs, key, "production").status_code == 200
    refused = _evaluate(two_envs, key, "staging")
    assert refused.status_code == 403
    assert "for environment 'production', not 'staging'" in refused.json()["error"]
    admin = {"Authorization": f"Bearer {make_token(two_envs.state.flagstaff, Permission.ADMIN)}"}
    listed = TestClient(two_envs, headers=admin).get("/api/v1/client-keys").json()["client_keys"]
    assert [(k["name"], k["environment"]) for k in listed] == [("old app", None)]


def test_an_admin_of_staging_only_makes_keys_for_staging_only(two_envs: Starlette) -> None:
    _, secret = two_envs.state.flagstaff.tokens.create("t", Permission.ADMIN, environments=["staging"])
    api = TestClient(two_envs, headers={"Authorization": f"Bearer {secret}"})
    assert api.post("/api/v1/envs/staging/client-keys", json={"name": "s"}).status_code == 201
    assert api.post("/api/v1/client-keys", json={"name": "p"}).status_code == 403


def test_a_key_table_from_before_environments_gains_the_column_and_its_keys_work(tmp_path: Path) -> None:
    path = tmp_path / "flags.db.tokens"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE client_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,"
        " created_at REAL NOT NULL, revoked_at REAL);"
    )
    old_key = "fsc_0a1b2c3d_" + "x" * 43
    digest = hashlib.sha256(old_key.encode()).hexdigest()
    conn.execute("INSERT INTO client_keys VALUES ('0a1b2c3d', 'legacy', ?, 1.0, NULL)", (digest,))
    conn.commit()
    conn.close()
    store = ClientKeyStore(str(path))
    try:
        info = store.verify(old_key)
        assert info is not None and info.name == "legacy" and info.environment is None
        assert info.environment_or("production") == "production"
        made, _ = store.create("new", "staging")
        assert [(k.name, k.environment) for k in store.list()] == [("legacy", None), ("new", "staging")]
        assert made.environment_or("production") == "staging"
    finally:
        store.close()


def test_client_key_cli_makes_a_key_for_an_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flags.db"
    out, err = io.StringIO(), io.StringIO()
    assert (
        main(["--store", url, "client-key", "create", "ios", "--env", "staging"], stdout=out, stderr=err) == 0
    )
    assert "in environment 'staging'" in err.getvalue()
    out = io.StringIO()
    assert main(["--store", url, "--json", "client-key", "list"], stdout=out, stderr=err) == 0
    assert [(k["name"], k["environment"]) for k in json.loads(out.getvalue())] == [("ios", "staging")]
    out = io.StringIO()
    assert main(["--store", url, "client-key", "list"], stdout=out, stderr=err) == 0
    assert "staging" in out.getvalue()
    err = io.StringIO()
    assert main(["--store", url, "client-key", "create", "x", "--env", "Prod!"], stdout=out, stderr=err) == 2
    assert "--env: bad environment name 'Prod!'" in err.getvalue()
    err = io.StringIO()
    assert main(["--store", url, "client-key", "list", "--env", "staging"], stdout=out, stderr=err) == 2
    assert "--env is for client-key create" in err.getvalue()
