"""Helpers for the HTTP tests (api and ui): a real uvicorn server in a thread, tokens.

``ServerThread(app)`` serves ``app`` on 127.0.0.1 at a random port, configured as
``flagstaff serve`` configures uvicorn (no proxy headers unless ``forwarded_allow_ips``
is given, a header-read timeout); ``.url`` is its base URL; ``stop()`` (or leaving the
``with`` block) shuts it down. The app's lifespan is not run, so the test owning the app closes its state
(``app.state.flagstaff.close()``), usually in a fixture.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from flagstaff.http.app import ServerState
from flagstaff.http.serving import uvicorn_options
from flagstaff.http.tokens import Permission


class ServerThread:
    def __init__(
        self,
        app: Any,
        port: int = 0,
        *,
        forwarded_allow_ips: str | None = None,
        header_timeout: float = 10.0,
        **config: Any,
    ) -> None:
        # IPPROTO_TCP, as flagstaff serve does: asyncio then sets TCP_NODELAY on each connection.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))  # a given port: a restart at the same address
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options: dict[str, Any] = {"lifespan": "off", "log_level": "warning", "timeout_graceful_shutdown": 2}
        options.update(
            uvicorn_options(forwarded_allow_ips=forwarded_allow_ips, header_timeout=header_timeout)
        )
        options.update(config)
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def make_token(state: ServerState, scope: Permission, name: str = "") -> str:
    """A fresh token of ``scope`` in the server's token database."""
    _, token = state.tokens.create(name or f"test-{scope.label}", scope)
    return token


def make_admin_token(state: ServerState) -> str:
    return make_token(state, Permission.ADMIN, "test-admin")
