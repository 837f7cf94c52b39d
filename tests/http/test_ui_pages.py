"""The dashboard's pages as HTML, without a browser: access, escaping, headers, odd flags."""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from flagstaff.admin import Admin
from flagstaff.http.app import create_app
from flagstaff.http.tokens import Permission
from flagstaff.stores import open_store
from tests._support.http_server import ServerThread, make_token

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flags.json"


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass
class Server:
    url: str
    state: object
    db: Path

    def get(self, path: str, token: str | None = None) -> Page:
        request = urllib.request.Request(self.url + path, headers={"Accept": "text/html"})
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=30) as response:
                return Page(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as exc:
            return Page(exc.code, dict(exc.headers), exc.read().decode())

    def token(self, scope: Permission) -> str:
        return make_token(self.state, scope)  # type: ignore[arg-type]


def _serve(
    tmp_path: Path, *, open_mode: bool = False, extra: dict[str, object] | None = None
) -> Iterator[Server]:
    db = tmp_path / "flags.db"
    store = open_store(f"sqlite:///{db}")
    try:
        documents = json.loads(EXAMPLES.read_text())
        documents.update(extra or {})
        Admin(store, author="seed").import_documents(documents)
    finally:
        store.close()
    app = create_app(f"sqlite:///{db}", token_db=str(tmp_path / "tokens.db"), open_mode=open_mode)
    server = ServerThread(app)
    try:
        yield Server(server.url, app.state.flagstaff, db)
    finally:
        server.stop()
        app.state.flagstaff.close()


HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from _serve(
        tmp_path, extra={"hostile": {"description": HOSTILE, "owner": '"><b>', "tags": ["<i>"]}}
    )


def test_pages_need_a_session_or_a_token(server: Server) -> None:
    for path in ("/", "/flags/dark_mode", "/changes"):
        page = server.get(path)
        assert page.status == 303, path
        assert page.headers["location"].endswith("/login")
        assert server.get(path, "fst_00000000_" + "x" * 43).status in (303, 401)


def test_a_read_token_sees_state_but_no_write_controls(server: Server) -> None:
    read = server.get("/", server.token(Permission.READ))
    assert read.status == 200
    assert 'id="flag-dark_mode"' in read.text
    banner = read.text.split('id="flag-new_year_banner"')[1].split("</tr>")[0]
    assert "scheduled from 2027-01-01 00:00:00 UTC" in banner
    assert 'data-action="kill"' not in read.text
    flag = server.get("/flags/checkout_button", server.token(Permission.READ))
    assert "Save experiment" not in flag.text and 'data-action="rollback"' not in flag.text
    write = server.get("/", server.token(Permission.WRITE))
    assert 'data-action="kill"' in write.text


def test_hostile_text_is_escaped(server: Server) -> None:
    token = server.token(Permission.WRITE)
    for path in ("/", "/flags/hostile"):
        page = server.get(path, token)
        assert page.status == 200
        assert HOSTILE not in page.text and "<b>" not in page.text and "<i>" not in page.text
        assert "&lt;script&gt;" in page.text
    # The JSON data block cannot close its <script> element early.
    assert (
        "</script>"
        not in server.get("/flags/hostile", token).text.split('id="flag-data">')[1].split("\n")[0][:-9]
    )


def test_pages_are_not_cached_and_cannot_be_framed(server: Server) -> None:
    page = server.get("/", server.token(Permission.READ))
    assert page.headers["cache-control"] == "no-store"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it
    script = server.get("/static/flagstaff.js")
    assert script.status == 200 and "javascript" in script.headers["content-type"]
    assert 'src="/static/flagstaff.js?v=' in page.text


def test_an_unknown_flag_is_a_404_page(server: Server) -> None:
    page = server.get("/flags/no_such_flag", server.token(Permission.READ))
    assert page.status == 404
    assert "No flag named" in page.text and "no_such_flag" in page.text


def test_filters_in_the_url_are_applied_by_the_server(server: Server) -> None:
    page = server.get("/?state=off&q=legacy", server.token(Permission.READ))
    tags = re.findall(r'<tr id="flag-([^"]+)"[^>]*>', page.text)
    rows = re.findall(r'<tr id="flag-[^"]+"[^>]*>', page.text)
    shown = [name for name, row in zip(tags, rows, strict=True) if " hidden" not in row]
    assert shown == ["legacy_search"] and len(rows) == 11
    assert '<option value="off" selected>' in page.text


def test_an_invalid_document_written_out_of_band_is_shown_as_invalid(server: Server) -> None:
    with sqlite3.connect(server.db) as conn:
        conn.execute("UPDATE flagstaff_flags SET raw = ? WHERE name = 'dark_mode'", ('{"enabeld": "on"}',))
    token = server.token(Permission.WRITE)
    listing = server.get("/", token).text
    row = listing.split('id="flag-dark_mode"')[1].split("</tr>")[0]
    assert "Invalid" in row and 'data-action="kill"' not in row
    page = server.get("/flags/dark_mode", token).text
    assert "did you mean &#39;enabled&#39;" in page
    assert "out-of-band" in page


def test_open_mode_needs_no_login(tmp_path: Path) -> None:
    for server in _serve(tmp_path, open_mode=True):
        page = server.get("/")
        assert page.status == 200
        assert "open mode (admin)" in page.text
        assert "Sign out" not in page.text


def test_mounted_under_a_prefix_links_stay_under_it(tmp_path: Path) -> None:
    db = tmp_path / "flags.db"
    inner = create_app(f"sqlite:///{db}", token_db=str(tmp_path / "tokens.db"), open_mode=True)
    host = Starlette(routes=[Mount("/flags", app=inner)])
    server = ServerThread(host)
    try:
        page = Server(server.url, inner.state.flagstaff, db).get("/flags/")
        assert page.status == 200
        assert 'src="/flags/static/flagstaff.js?v=' in page.text
        assert 'data-events="/flags/api/v1/events"' in page.text
        assert Server(server.url, inner.state.flagstaff, db).get("/flags/static/flagstaff.css").status == 200
    finally:
        server.stop()
        inner.state.flagstaff.close()
