"""``POST /api/v1/force-tokens``: admin tokens get a signed forcing token the middleware honours."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flagstaff import forcing
from flagstaff.errors import ClientError
from flagstaff.http.app import ServerState, Settings, create_app
from flagstaff.http.tokens import Permission
from tests._support.http_server import make_token

KEY = b"k" * 32


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Starlette]:
    monkeypatch.delenv(forcing.KEY_ENV, raising=False)
    app = create_app(f"sqlite:///{tmp_path / 'flags.db'}", settings=Settings(force_key=KEY))
    yield app
    app.state.flagstaff.close()


def _client(app: Starlette, permission: Permission) -> TestClient:
    state: ServerState = app.state.flagstaff
    return TestClient(app, headers={"Authorization": f"Bearer {make_token(state, permission, 'qa')}"})


def test_an_admin_gets_a_token_that_verifies_for_its_value_only(app: Starlette) -> None:
    response = _client(app, Permission.ADMIN).post(
        "/api/v1/force-tokens", json={"value": "checkout_b", "ttl": "15m"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["value"] == "checkout_b"
    assert forcing.verify(body["token"], KEY) == "checkout_b"
    assert forcing.verify(body["token"], b"x" * 32) is None  # another key: nothing
    # Valid for 15 minutes, not longer.
    assert forcing.verify(body["token"], KEY, now=body["expires_at"]) is None
    assert forcing.verify(body["token"], KEY, now=body["expires_at"] - 1) == "checkout_b"


def test_a_write_token_cannot_make_one_and_bad_bodies_are_400(app: Starlette) -> None:
    assert _client(app, Permission.WRITE).post("/api/v1/force-tokens", json={"value": "x"}).status_code == 403
    admin = _client(app, Permission.ADMIN)
    for body in ({"value": 5}, {"value": "x", "ttl": -1}, {"value": "x", "ttl": "soon"}, {"ttl": 60}):
        response = admin.post("/api/v1/force-tokens", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]


def test_a_server_without_a_key_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(forcing.KEY_ENV, raising=False)
    app = create_app(f"sqlite:///{tmp_path / 'flags.db'}")
    try:
        response = _client(app, Permission.ADMIN).post("/api/v1/force-tokens", json={"value": "x"})
        assert response.status_code == 501
        assert "FLAGSTAFF_FORCE_KEY" in response.json()["error"]
    finally:
        app.state.flagstaff.close()


def test_the_key_comes_from_the_environment_and_a_short_one_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(forcing.KEY_ENV, "e" * 20)
    app = create_app(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        token = (
            _client(app, Permission.ADMIN).post("/api/v1/force-tokens", json={"value": "v"}).json()["token"]
        )
        assert forcing.verify(token, "e" * 20) == "v"
    finally:
        app.state.flagstaff.close()
    monkeypatch.setenv(forcing.KEY_ENV, "short")
    with pytest.raises(ClientError, match="16"):
        create_app(f"sqlite:///{tmp_path / 'b.db'}")
