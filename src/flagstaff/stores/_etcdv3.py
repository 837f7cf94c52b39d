"""A small etcd v3 client over etcd's JSON gRPC gateway (``/v3/...``), stdlib only.

Why not a gRPC client: see ``docs/fleet.md``. In short, the classic ``etcd3``
package is unmaintained and pins old grpc/protobuf, and grpc's C core does
not cooperate with gevent. The gateway speaks JSON over HTTP/1.1, so
:mod:`http.client` is enough, and it is green under gevent's monkey-patching.

Only what the etcd store needs is here: range, txn, auth and a
streaming watch. Keys and values are base64 on the wire; 64-bit integers come
back as strings; fields equal to their default are omitted (``"version"``
absent means 0, an event without ``"type"`` is a PUT).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import select
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flagstaff.errors import StoreError, StoreUnavailable, WriteOutcomeUnknown
from flagstaff.runtime import Runtime
from flagstaff.stores.base import decode_raw

__all__ = ["Gateway", "GatewayError", "KeyValue", "WatchStream", "b64", "prefix_end"]

log = logging.getLogger("flagstaff.stores.etcd")

Json = dict[str, Any]

# gRPC status codes the gateway reports that mean "try again / elsewhere".
_UNAVAILABLE_CODES = {4, 14}  # DEADLINE_EXCEEDED, UNAVAILABLE (no leader, leader changed, ...)
_UNAUTHENTICATED = 16
# The one "unavailable" answer that says a write was refused before it was proposed.
_NO_LEADER = "no leader"
# Errors of a request on a kept-alive connection that the peer had closed meanwhile.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.BadStatusLine)


class GatewayError(StoreError):
    """etcd answered with an error (``code`` is the gRPC status code)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(f"etcd error {code}: {message}")


def b64(text: str | bytes) -> str:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> str:
    """The exclusive end of the key range holding every key starting with ``prefix``."""
    data = bytearray(prefix.encode())
    while data:
        if data[-1] < 0xFF:
            data[-1] += 1
            return b64(bytes(data))
        data.pop()
    return b64(b"\0")


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    version: int
    mod_revision: int
    create_revision: int

    @classmethod
    def parse(cls, kv: Json) -> KeyValue:
        return cls(
            # A key that is not UTF-8 (etcdctl can write one) must not fail a whole range or
            # watch response: its bytes are kept and the store skips it (no flag has such a name).
            decode_raw(_unb64(kv.get("key"))),
            _unb64(kv.get("value")),
            int(kv.get("version", 0)),
            int(kv.get("mod_revision", 0)),
            int(kv.get("create_revision", 0)),
        )


class WatchStream:
    """One streaming ``/v3/watch`` response; ``close()`` aborts a blocked read from any task."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._response = response
        self._closed = False

    def __iter__(self) -> Iterator[Json]:
        decoder = json.JSONDecoder()
        buffer = ""
        while not self._closed:
            try:
                chunk = self._response.read1(65536)
            except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
                if self._closed:
                    return
                raise StoreUnavailable(f"etcd watch stream broke: {exc}") from exc
            if not chunk:
                if self._closed:
                    return
                raise StoreUnavailable("etcd closed the watch stream")
            buffer += chunk.decode()
            while True:
                buffer = buffer.lstrip()
                if not buffer:
                    break
                try:
                    message, end = decoder.raw_decode(buffer)
                except json.JSONDecodeError:
                    break  # an incomplete message: read more
                buffer = buffer[end:]
                yield message

    def abort(self) -> None:
        """Make a blocked read return, from any task (the reader then calls :meth:`close`)."""
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # already gone: nothing to abort
                log.debug("etcd watch socket shutdown: %s", exc)

    def close(self) -> None:
        """Release the connection; only from the task that reads the stream."""
        self._closed = True
        self._conn.close()


class Gateway:
    """Requests to one etcd cluster through any of its members' gateways."""

    def __init__(
        self,
        endpoints: list[tuple[str, int]],
        runtime: Runtime,
        *,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 3.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self._endpoints = endpoints
        self._current = 0
        self._user = user
        self._password = password  # never logged
        self._token: str | None = None
        self._timeout = timeout
        self._tls = tls  # None: plain HTTP
        self._lock = runtime.lock()
        self._idle: list[tuple[int, http.client.HTTPConnection]] = []
        self._closed = False

    # -- plain requests ------------------------------------------------------------------------

    def call(self, path: str, body: Json, *, timeout: float | None = None, write: bool = False) -> Json:
        """POST ``body`` to ``/v3/<path>``; tries every endpoint before giving up.

        ``write``: the request changes something, so once it has been sent whole it is never
        sent again: a lost answer raises :class:`WriteOutcomeUnknown` instead.
        """
        last: Exception | None = None
        for _ in range(len(self._endpoints)):
            index = self._current
            try:
                return self._call_authenticated(index, path, body, timeout, write)
            except GatewayError as exc:
                if exc.code not in _UNAVAILABLE_CODES:
                    raise
                if write and _NO_LEADER not in str(exc):
                    # "request timed out", "leader changed": the proposal may still commit.
                    raise WriteOutcomeUnknown(
                        f"outcome unknown: etcd did not confirm the write ({exc}); it may have been applied"
                    ) from exc
                last = exc
            except WriteOutcomeUnknown:
                raise  # sent: trying another endpoint would send it twice
            except StoreUnavailable as exc:
                last = exc
            with self._lock:
                if self._current == index:
                    self._current = (index + 1) % len(self._endpoints)
        raise StoreUnavailable(f"no etcd endpoint answered: {last}") from last

    def _call_authenticated(
        self, index: int, path: str, body: Json, timeout: float | None, write: bool = False
    ) -> Json:
        if self._user is not None and self._token is None:
            self._authenticate(index)
        try:
            return self._post(index, path, body, timeout, write=write)
        except GatewayError as exc:
            if exc.code != _UNAUTHENTICATED or self._user is None:
                raise
        # The token expired (simple tokens live five minutes by default): once more with a new one.
        # (A refused request changed nothing, so a write may go again.)
        self._authenticate(index)
        return self._post(index, path, body, timeout, write=write)

    def _authenticate(self, index: int) -> None:
        reply = self._post(
            index, "auth/authenticate", {"name": self._user, "password": self._password}, None, auth=False
        )
        self._token = str(reply.get("token", ""))

    def _post(
        self,
        index: int,
        path: str,
        body: Json,
        timeout: float | None,
        *,
        auth: bool = True,
        write: bool = False,
    ) -> Json:
        headers = {"Content-Type": "application/json"}
        if auth and self._token:
            headers["Authorization"] = self._token
        payload = json.dumps(body)
        for attempt in (1, 2):
            conn, reused = self._checkout(index)
            sent = False
            try:
                conn.timeout = timeout or self._timeout
                if conn.sock is not None:
                    conn.sock.settimeout(conn.timeout)
                conn.request("POST", f"/v3/{path}", payload, headers)
                sent = True
                response = conn.getresponse()
                data = response.read()
                break
            except _STALE as exc:
                conn.close()
                if write and sent:
                    # Sent whole, answer lost: etcd may have applied it. A resend is not harmless
                    # (a compare-and-set write would fail against itself, an unconditional one
                    # would apply twice), so say so instead.
                    raise WriteOutcomeUnknown(
                        f"outcome unknown: etcd at {self._where(index)} did not answer the write "
                        f"({type(exc).__name__}); it may have been applied"
                    ) from exc
                # A kept-alive connection the server (or a proxy) closed while idle: once more on
                # a new one (reads; a write only if it never went out whole).
                if reused and attempt == 1:
                    log.debug("etcd connection went stale (%s); reconnecting", type(exc).__name__)
                    continue
                host, port = self._endpoints[index]
                raise StoreUnavailable(f"etcd at {host}:{port} unreachable: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if write and sent:  # a timeout or reset while waiting for the answer
                    raise WriteOutcomeUnknown(
                        f"outcome unknown: etcd at {self._where(index)} did not answer the write "
                        f"({exc or type(exc).__name__}); it may have been applied"
                    ) from exc
                raise StoreUnavailable(f"etcd at {self._where(index)} unreachable: {exc}") from exc
        conn.timeout = self._timeout
        self._checkin(index, conn)
        try:
            reply: Json = json.loads(data) if data else {}
        except ValueError as exc:
            raise StoreUnavailable(f"etcd sent a malformed reply (HTTP {response.status})") from exc
        if response.status != 200 or ("error" in reply and "header" not in reply):
            code = int(reply.get("code", 2))
            message = str(reply.get("message") or reply.get("error") or f"HTTP {response.status}")
            raise GatewayError(code, message)
        return reply

    def _where(self, index: int) -> str:
        host, port = self._endpoints[index]
        return f"{host}:{port}"

    def _checkout(self, index: int) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to endpoint ``index`` (reused=True), else a new one."""
        while True:
            with self._lock:
                found = next((i for i, (idx, _) in enumerate(self._idle) if idx == index), None)
                if found is None:
                    break
                conn = self._idle.pop(found)[1]
            sock = conn.sock
            # Readable while idle means the peer closed it (or sent garbage): drop it.
            if sock is not None and not select.select([sock], [], [], 0)[0]:
                return conn, True
            conn.close()
        return self._connection(index), False

    def _connection(self, index: int) -> http.client.HTTPConnection:
        host, port = self._endpoints[index]
        if self._tls is not None:
            return http.client.HTTPSConnection(host, port, timeout=self._timeout, context=self._tls)
        return http.client.HTTPConnection(host, port, timeout=self._timeout)

    def _checkin(self, index: int, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < 8:
                self._idle.append((index, conn))
                return
        conn.close()

    # -- watch --------------------------------------------------------------------------------

    def open_watch(self, create_request: Json) -> WatchStream:
        """Start a watch on the current endpoint (rotating on failure)."""
        last: Exception | None = None
        for _ in range(len(self._endpoints)):
            index = self._current
            try:
                if self._user is not None and self._token is None:
                    self._authenticate(index)
                return self._open_watch(index, create_request)
            except StoreUnavailable as exc:
                last = exc
            with self._lock:
                if self._current == index:
                    self._current = (index + 1) % len(self._endpoints)
        raise StoreUnavailable(f"no etcd endpoint accepted a watch: {last}") from last

    def _open_watch(self, index: int, create_request: Json) -> WatchStream:
        host, port = self._endpoints[index]
        conn = self._connection(index)
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = self._token
        try:
            conn.request("POST", "/v3/watch", json.dumps({"create_request": create_request}), headers)
            response = conn.getresponse()
            if response.status != 200:
                raise StoreUnavailable(f"etcd at {host}:{port} refused the watch (HTTP {response.status})")
            # The stream may stay quiet for hours: no read timeout (a watchdog aborts a dead one).
            if conn.sock is not None:
                conn.sock.settimeout(None)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise StoreUnavailable(f"etcd at {host}:{port} unreachable: {exc}") from exc
        return WatchStream(conn, response)

    def invalidate_token(self) -> None:
        self._token = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.close()
