"""How ``flagstaff serve`` runs uvicorn: proxy headers off unless configured, a header-read timeout.

uvicorn trusts ``X-Forwarded-For``/``X-Forwarded-Proto`` from 127.0.0.1 by default,
so anything on the same host (a TLS proxy, a tunnel, a curl) can claim any client
address: rate limits keyed by address are then bypassed with a rotating header, or
turned against a victim. :func:`uvicorn_options` turns that off unless the operator
names the proxies to trust (``--forwarded-allow-ips``).

uvicorn's h11 protocol has no deadline for the request head: a client that sends
half a header and then nothing holds its connection (and a file descriptor) for
ever. :func:`header_timeout_protocol` returns a subclass that closes such a
connection after ``seconds`` with ``408``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["DEFAULT_HEADER_TIMEOUT", "header_timeout_protocol", "uvicorn_options"]

DEFAULT_HEADER_TIMEOUT = 10.0

_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request's line and headers.

    The clock starts when the connection opens and, on a kept-alive connection, at
    the first byte of the next request (idle time between requests is uvicorn's
    keep-alive timeout's business). It stops once h11 has a complete request head.
    """

    header_timeout: float = DEFAULT_HEADER_TIMEOUT

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_header_timer()
        elif self.conn.their_state is h11.IDLE:  # part of a request head is buffered
            self._arm_header_timer()
        else:
            self._cancel_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self.logger.info("closed a connection with no complete request head in %ss", self.header_timeout)
        self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """An h11 protocol class (for ``uvicorn.Config(http=...)``) with a ``seconds`` header deadline."""
    if seconds <= 0:
        raise ValueError("the header timeout must be positive")
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout": seconds})


def uvicorn_options(
    *, forwarded_allow_ips: str | None = None, header_timeout: float = DEFAULT_HEADER_TIMEOUT
) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments for serving flagstaff.

    Forwarded headers are honoured only when ``forwarded_allow_ips`` names the
    proxies (comma-separated addresses or networks, as uvicorn takes them);
    otherwise the client address is the socket's peer, whatever headers say.
    """
    options: dict[str, Any] = {"http": header_timeout_protocol(header_timeout)}
    if forwarded_allow_ips:
        options.update(proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips)
    else:
        options["proxy_headers"] = False
    return options
