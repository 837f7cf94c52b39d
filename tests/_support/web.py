"""Helpers for the web integration tests: a client on a memory store, and servers.

``FlagWorld`` holds a real memory store, an Admin for writes and a client that
follows it; ``set`` writes through the validated path and waits (bounded) until
the client serves the new revision. ``serve_wsgi`` runs a real threaded WSGI
server on loopback (threads, or greenlets when the process is monkey-patched).
"""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import flagstaff
from flagstaff.admin import Admin
from flagstaff.client import Client
from flagstaff.stores.memory import MemoryStore
from tests._support.client import eventually

# The flags every web test uses: who sees what is easy to tell apart.
FLAGS: dict[str, Any] = {
    "everyone": "on",
    "nobody": "off",
    "alice_only": {"users": ["alice"]},
    "beta_group": {"groups": ["beta"]},
    "forced": {"url": "try_forced"},
    "on_beta_subdomain": {"subdomains": ["beta"]},
    "theme": {"users": ["alice"], "variants": ["dark"]},
}


class FlagWorld:
    def __init__(self, flags: dict[str, Any] | None = None) -> None:
        self.store = MemoryStore(f"web-{uuid.uuid4().hex}")
        self.admin = Admin(self.store, author="web-test")
        for name, doc in (FLAGS if flags is None else flags).items():
            self.admin.set(name, doc)
        self.client: Client = flagstaff.connect(self.store.url, timeout=5)
        assert self.client.snapshot.revision == self.store.load().revision

    def set(self, name: str, doc: Any) -> None:
        assert self.admin.set(name, doc).changed
        target = self.store.load().revision
        assert eventually(lambda: self.client.snapshot.revision >= target, 30), "change not applied"

    def close(self) -> None:
        self.client.close()
        self.store.close()


@contextlib.contextmanager
def flag_world(flags: dict[str, Any] | None = None) -> Iterator[FlagWorld]:
    world = FlagWorld(flags)
    try:
        yield world
    finally:
        world.close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """A real threaded WSGI server for ``app`` on a random loopback port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def get_json(url: str, cookie: str | None = None) -> tuple[Any, dict[str, str]]:
    """GET ``url``; returns the decoded JSON body and the response headers."""
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read()), dict(response.headers)
