"""The server as a whole: the event stream over a real uvicorn, another process seeing API
writes, mounting in a host ASGI app, ``flagstaff serve`` itself and its logs."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from flagstaff.http.app import JsonFormatter, ServerState, Settings, create_app
from flagstaff.http.tokens import Permission, TokenStore
from tests._support.http_server import ServerThread, make_token

REPO = Path(__file__).resolve().parents[2]


class Served:
    def __init__(self, db: Path, settings: Settings | None = None) -> None:
        self.db = db
        self.app = create_app(f"sqlite:///{db}", settings=settings)
        self.state: ServerState = self.app.state.flagstaff
        self.server = ServerThread(self.app)
        self.url = self.server.url
        self.token = make_token(self.state, Permission.WRITE, "writer")
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def close(self) -> None:
        self.server.stop()
        self.state.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path / "flags.db", Settings(ping_interval=0.3))
    yield s
    s.close()


class EventReader:
    """Reads an SSE stream on a thread: events go to a queue as (event, data) pairs."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.connected = threading.Event()
        self.client = httpx2.Client(timeout=httpx2.Timeout(10.0, read=30.0))
        self.status = 0
        self.thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self.thread.start()
        assert self.connected.wait(10), "event stream did not connect"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self.client.stream("GET", url, headers=headers) as response:
                self.status = response.status_code
                kind, data = "", ""
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith(":"):
                        self.events.put(("comment", line))
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "" and kind:
                        self.events.put((kind, json.loads(data)))
                        kind, data = "", ""
        except httpx2.HTTPError:
            pass  # closed by the test
        finally:
            self.connected.set()
            self.events.put(("end", None))

    def next(self, kind: str = "change", timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got, data = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if got in (kind, "end"):
                return data if got == kind else None

    def close(self) -> None:
        self.client.close()
        self.thread.join(10)


def test_event_stream_delivers_api_and_out_of_band_changes(served: Served) -> None:
    reader = EventReader(f"{served.url}/api/v1/events", served.headers)
    try:
        with httpx2.Client(base_url=served.url, headers=served.headers) as api:
            assert api.put("/api/v1/flags/f", json={"document": 10}).status_code == 201
            event = reader.next()
            assert event["name"] == "f" and event["version"] == 1 and event["document"] == 10
            assert api.patch("/api/v1/flags/f", json={"op": "kill"}).status_code == 200
            event = reader.next()
            assert event["document"] == {"enabled": False, "percentage": 10} and event["version"] == 2
            # Written by another program straight into the store: streamed all the same.
            import sqlite3

            with sqlite3.connect(served.db) as conn:
                conn.execute("UPDATE flagstaff_flags SET raw = '\"on\"' WHERE name = 'f'")
            event = reader.next()
            assert event["document"] == "on" and event["version"] == 3
            assert api.delete("/api/v1/flags/f").status_code == 204
            event = reader.next()
            assert event["document"] is None and event["version"] is None
            assert event["revision"] > 3
        assert reader.next("comment").startswith(": ping")  # keep-alive on an idle stream
    finally:
        reader.close()


def test_event_stream_ends_when_its_token_is_revoked(served: Served) -> None:
    reader = EventReader(f"{served.url}/api/v1/events", served.headers)
    try:
        served.state.tokens.revoke(served.token[4:12])
        assert reader.next("change", timeout=10) is None  # the stream ended (at the next ping)
    finally:
        reader.close()


def test_event_stream_needs_a_token(served: Served) -> None:
    assert httpx2.get(f"{served.url}/api/v1/events").status_code == 401


def test_many_subscribers_each_get_the_change(served: Served) -> None:
    readers = [EventReader(f"{served.url}/api/v1/events", served.headers) for _ in range(20)]
    try:
        assert served.state.events.subscribers == 20
        httpx2.put(f"{served.url}/api/v1/flags/g", json={"document": "on"}, headers=served.headers)
        assert all(r.next()["name"] == "g" for r in readers)
    finally:
        for r in readers:  # close all, then wait for all: each reader ends at its next ping
            r.client.close()
        for r in readers:
            r.close()
    deadline = time.monotonic() + 10
    while served.state.events.subscribers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.state.events.subscribers == 0


CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys
    import flagstaff

    client = flagstaff.connect(sys.argv[1])
    print("ready", client.is_enabled("checkout", {"user_id": "alice"}), flush=True)
    decision = client.wait_for_change("checkout", 60, {"user_id": "alice"})
    print("changed", decision.enabled, decision.reason.value, flush=True)
    client.close()
    """
)


def test_a_separate_client_process_sees_a_change_made_through_the_api(served: Served) -> None:
    api = httpx2.Client(base_url=served.url, headers=served.headers)
    assert api.put("/api/v1/flags/checkout", json={"document": {"users": ["alice"]}}).status_code == 201
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, f"sqlite:///{served.db}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["ready", "True"]
        assert api.patch("/api/v1/flags/checkout", json={"op": "kill"}).status_code == 200
        out, err = proc.communicate(timeout=60)
        assert out.split() == ["changed", "False", "off"], err
    finally:
        proc.kill()
        api.close()


def test_mounted_inside_a_host_asgi_app(tmp_path: Path) -> None:
    flags = create_app(f"sqlite:///{tmp_path}/flags.db")
    state: ServerState = flags.state.flagstaff
    token = make_token(state, Permission.WRITE)

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("host app")

    host = Starlette(routes=[Route("/", hello), Mount("/flags", app=flags)])
    try:
        browser = TestClient(host)
        assert browser.get("/").text == "host app"
        api = TestClient(host, headers={"Authorization": f"Bearer {token}"})
        created = api.put("/flags/api/v1/flags/f", json={"document": "on"})
        assert created.status_code == 201
        assert api.get("/flags/api/v1/flags/f").json()["document"] == "on"
        assert api.get("/flags/healthz").json()["status"] == "ok"
        login = browser.get(f"/flags/login?token={token}", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/flags/"
        assert "Path=/flags/" in login.headers["set-cookie"]
        assert browser.get("/flags/api/v1/flags").status_code == 200
        page = browser.get("/flags/", headers={"Accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 200
        stranger = TestClient(host).get("/flags/", headers={"Accept": "text/html"}, follow_redirects=False)
        assert stranger.status_code == 303 and stranger.headers["location"] == "/flags/login"
    finally:
        state.close()


def test_json_log_lines() -> None:
    record = logging.LogRecord(
        "flagstaff.http.access", logging.INFO, __file__, 1, "GET %s %d", ("/x", 200), None
    )
    record.request_id = "abc"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "GET /x 200"
    assert line["request_id"] == "abc"
    assert line["level"] == "info" and line["logger"] == "flagstaff.http.access"


def test_flagstaff_serve_seeds_prints_a_login_link_and_revokes_it_at_exit(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flagstaff",
            "serve",
            "--port",
            "0",
            "--login-link",
            "--seed",
            str(REPO / "examples" / "flags.json"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Open http://127.0.0.1:"), line
        link = line.split()[1]
        base = link.split("/login")[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx2.get(f"{base}/healthz")
                break
            except httpx2.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert health.json()["flags"] == len(json.loads((REPO / "examples" / "flags.json").read_text()))
        with httpx2.Client() as browser:
            login = browser.get(link, follow_redirects=False)
            assert login.status_code == 303
            assert browser.get(f"{base}/api/v1/flags").status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [entry for entry in logs if entry["logger"] == "flagstaff.http.access"]
    assert any(entry["path"] == "/login" and entry["status"] == 303 for entry in access)
    assert all("token=" not in json.dumps(entry) for entry in access)  # the login link's token is not logged
    tokens = TokenStore(str(tmp_path / "flagstaff.db.tokens"))
    try:
        assert [t.active for t in tokens.list()] == [False]
    finally:
        tokens.close()
    # A second start seeds nothing: edits made since are kept.
    from flagstaff.http.cli import seed
    from flagstaff.stores import open_store

    store = open_store(f"sqlite:///{tmp_path}/flagstaff.db")
    try:
        store.put("dark_mode", '"off"')
        assert seed(store, json.loads((REPO / "examples" / "flags.json").read_text()), "test") == []
        assert store.get("dark_mode").raw == '"off"'  # type: ignore[union-attr]
    finally:
        store.close()


def test_server_starts_while_its_store_is_down_and_follows_it_once_up() -> None:
    from tests._support.redis_server import RedisServer

    redis = RedisServer()
    url = redis.url("fs-http")
    redis.kill()  # down before the server starts
    app = create_app(url, token_db=":memory:", settings=Settings(load_timeout=0.5, ping_interval=0.3))
    state: ServerState = app.state.flagstaff
    try:
        token = make_token(state, Permission.WRITE)
        headers = {"Authorization": f"Bearer {token}"}
        client = TestClient(app, headers=headers)
        assert client.get("/healthz").status_code == 503
        assert client.get("/healthz").json()["state"] == "defaults"
        assert client.put("/api/v1/flags/f", json={"document": "on"}).status_code == 503
        redis.start()
        deadline = time.monotonic() + 30
        while client.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the server never reached the store"
            time.sleep(0.1)
        with ServerThread(app) as server:
            reader = EventReader(f"{server.url}/api/v1/events", headers)
            try:
                deadline = time.monotonic() + 30
                while not state.events.following:
                    assert time.monotonic() < deadline, "the event feed never started"
                    time.sleep(0.1)
                assert client.put("/api/v1/flags/f", json={"document": "on"}).status_code == 201
                assert reader.next()["name"] == "f"
            finally:
                reader.client.close()
                reader.close()
    finally:
        state.close()
        redis.close()


def _start_serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``flagstaff serve --port 0 ARGS`` in ``tmp_path``: the process and its first line of output."""
    env = {k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flagstaff", "serve", "--port", "0", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


def _wait_up(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx2.get(f"{base}/healthz")
            return
        except httpx2.ConnectError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(15)  # far beyond the header timeout: a server without one never answers
    got = b""
    while chunk := sock.recv(4096):
        got += chunk
    return got


def test_flagstaff_serve_ignores_forwarded_headers_and_times_out_half_a_header(tmp_path: Path) -> None:
    proc, line = _start_serve(tmp_path, "--header-timeout", "0.5")
    try:
        assert line.startswith("Serving http://127.0.0.1:"), line
        base = line.split()[1]
        _wait_up(base)
        bad = {"Authorization": "Bearer fst_00000000_" + "A" * 43}
        with httpx2.Client(base_url=base) as client:
            codes = [
                client.get("/api/v1/flags", headers={**bad, "X-Forwarded-For": f"198.51.100.{i}"}).status_code
                for i in range(12)
            ]
        assert codes == [401] * 10 + [429] * 2
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
            assert _read_until_closed(sock).startswith(b"HTTP/1.1 408")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    access = [json.loads(x) for x in err.splitlines() if x.startswith("{") and '"flagstaff.http.access"' in x]
    assert access and {entry["client"] for entry in access} == {"127.0.0.1"}


def test_header_timeout_on_a_kept_alive_connection(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db")
    try:
        with ServerThread(app, header_timeout=0.5) as server:
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                sock.settimeout(15)
                first = sock.recv(65536)
                assert first.startswith(b"HTTP/1.1 ")  # answered, and the connection kept
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
                assert b"HTTP/1.1 408" in _read_until_closed(sock)
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                assert _read_until_closed(sock).startswith(b"HTTP/1.1 408")  # silent from the start
            # A client that sends its head in pieces, within the deadline, is served.
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
                sock.sendall(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
                assert _read_until_closed(sock).startswith(b"HTTP/1.1 ")
    finally:
        app.state.flagstaff.close()


def test_login_link_works_once_and_its_token_expires_even_after_kill_9(tmp_path: Path) -> None:
    proc, line = _start_serve(tmp_path, "--login-link", "--login-link-seconds", "2")
    try:
        assert line.startswith("Open http://127.0.0.1:"), line
        link = line.split()[1]
        _wait_up(link.split("/login")[0])
    finally:
        proc.kill()  # SIGKILL: the server gets no chance to revoke anything
        proc.communicate(timeout=30)
    tokens = TokenStore(str(tmp_path / "flagstaff.db.tokens"))
    try:
        [info] = tokens.list()
        assert info.revoked_at is None and info.kind == "login"
        assert info.expires_at is not None and info.expires_at <= info.created_at + 2
        while time.time() <= info.expires_at + 0.05:  # let the link's own deadline pass
            time.sleep(0.1)
        assert not tokens.list()[0].active
    finally:
        tokens.close()
    app = create_app(f"sqlite:///{tmp_path}/flagstaff.db")
    try:
        path = "/login?" + link.split("?", 1)[1]
        assert TestClient(app).get(path, follow_redirects=False).status_code == 401
    finally:
        app.state.flagstaff.close()


def test_login_link_is_good_for_one_session_and_never_as_a_bearer_token(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db")
    state: ServerState = app.state.flagstaff
    try:
        token = state.login_token()
        assert (
            TestClient(app, headers={"Authorization": f"Bearer {token}"}).get("/api/v1/flags").status_code
            == 401
        )
        browser = TestClient(app)
        assert browser.get(f"/login?token={token}", follow_redirects=False).status_code == 303
        assert browser.get("/api/v1/tokens").status_code == 200  # the session is admin
        again = TestClient(app).get(f"/login?token={token}", follow_redirects=False)
        assert again.status_code == 401
        assert (
            TestClient(app).post("/login", data={"token": token}, follow_redirects=False).status_code == 401
        )
        [info] = state.tokens.list()
        assert info.used_at is not None and not info.active
        assert browser.get("/api/v1/flags").status_code == 200  # used, not revoked: its session lives on
        state.tokens.revoke(info.id)  # what closing the server does
        assert browser.get("/api/v1/flags").status_code == 401
    finally:
        state.close()


def test_concurrent_exchanges_of_one_link_open_one_session(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db")
    state: ServerState = app.state.flagstaff
    try:
        token = state.login_token()
        with ServerThread(app) as server:
            results: list[int] = []

            def open_link() -> None:
                results.append(httpx2.get(f"{server.url}/login?token={token}").status_code)

            threads = [threading.Thread(target=open_link) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        assert sorted(results) == [303] + [401] * 7
    finally:
        state.close()


def test_a_login_link_session_keeps_its_event_stream(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db", settings=Settings(ping_interval=0.2))
    state: ServerState = app.state.flagstaff
    try:
        with ServerThread(app) as server:
            with httpx2.Client() as browser:
                assert browser.get(f"{server.url}/login?token={state.login_token()}").status_code == 303
                cookie = browser.cookies["flagstaff_session"]
            reader = EventReader(f"{server.url}/api/v1/events", {"Cookie": f"flagstaff_session={cookie}"})
            try:
                assert reader.next("comment").startswith(": ping")
                assert reader.next("comment").startswith(": ping")  # still open after the link is used
                state.admin.set("f", "on")
                assert reader.next()["name"] == "f"
            finally:
                reader.client.close()
                reader.close()
    finally:
        state.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_serve_socket_gives_accepted_connections_tcp_nodelay(host: str) -> None:
    """Keep-alive answers waited ~40 ms each on Nagle: the listening socket must say it is TCP,
    so that asyncio (under uvicorn) sets TCP_NODELAY on every connection it accepts."""
    import asyncio
    import socket

    from flagstaff.cli import UsageError
    from flagstaff.http.cli import _bind

    try:
        sock = _bind(host, 0)
    except UsageError:  # no IPv6 on this host
        pytest.skip(f"cannot listen on {host}")
    seen: list[int] = []

    async def main() -> None:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=sock)
        port = sock.getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection(host, port)
            await reader.read()  # closed by the server once it has looked
            writer.close()

    try:
        asyncio.run(main())
    finally:
        sock.close()
    assert len(seen) == 1 and seen[0] != 0


def test_each_change_is_serialised_once_whatever_the_number_of_streams(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serialising per subscriber stalled the loop (100 streams x 3.9 MB: 1.3 s): one encoding
    per change, the same bytes handed to every stream."""
    from flagstaff.http.events import ChangeEvent

    calls: list[str] = []
    original = ChangeEvent.to_json

    def counting(self: ChangeEvent) -> str:
        calls.append(self.name)
        return original(self)

    monkeypatch.setattr(ChangeEvent, "to_json", counting)
    readers = [EventReader(f"{served.url}/api/v1/events", served.headers) for _ in range(25)]
    try:
        assert served.state.events.subscribers == 25
        for i in range(3):
            doc = {
                "users": [f"user{i}"],
                "description": "caf\u00e9 \u65e5\u672c",
            }  # non-ASCII survives the bytes
            response = httpx2.put(
                f"{served.url}/api/v1/flags/g", json={"document": doc}, headers=served.headers
            )
            assert response.status_code in (200, 201)
            assert all(r.next()["document"] == doc for r in readers)
    finally:
        for r in readers:
            r.client.close()
        for r in readers:
            r.close()
    assert calls == ["g", "g", "g"]


def test_an_event_larger_than_a_frame_slice_arrives_whole(served: Served) -> None:
    """Big frames are written in slices (a turn of the loop between them): each stream must
    still get the whole event, byte for byte, non-ASCII included."""
    from flagstaff.http.api.events import FRAME_SLICE

    users = [f"\u00fcser-{i:07d}" for i in range(3 * FRAME_SLICE // 12)]
    readers = [EventReader(f"{served.url}/api/v1/events", served.headers) for _ in range(3)]
    try:
        response = httpx2.put(
            f"{served.url}/api/v1/flags/big", json={"document": {"users": users}}, headers=served.headers
        )
        assert response.status_code == 201
        assert len(response.request.content) > 2 * FRAME_SLICE
        for reader in readers:
            assert reader.next()["document"] == {"users": users}
    finally:
        for r in readers:
            r.client.close()
        for r in readers:
            r.close()
