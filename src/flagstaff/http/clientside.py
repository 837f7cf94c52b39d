"""Client-side evaluation's plumbing: public client keys, their rate limits, CORS.

A *client key* (``fsc_<id>_<secret>``) is meant to be shipped inside a web page or a
mobile app, so it is public by design: it can do exactly one thing, ask
``/api/v1/client/evaluate`` for the decisions of flags whose document says
``"client_visible": true`` (never a document, never history; see docs/clientside.md),
in the one environment it was made for (a key without one, made before keys had one or
without naming one, is the default environment's).
Its shape is not a token's (``fst_``), so no other endpoint accepts it. Only its SHA-256
is stored (the ``client_keys`` table of the token database), and a revocation takes
effect at the next request.

Being public, a key is no defence against a flood: :class:`TokenBuckets` limit requests
per key and per client address (answered 429 with ``Retry-After``). :class:`ClientSide`
holds those limits and the origins allowed to call from a browser (CORS).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

from flagstaff.errors import FlagstaffError, StoreUnavailable

__all__ = [
    "ClientKey",
    "ClientKeyError",
    "ClientKeyStore",
    "ClientSide",
    "TokenBuckets",
    "cors_headers",
    "well_formed_key",
]

_FORMAT = re.compile(r"^fsc_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS client_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""
# Added after the first release: (column, declaration), added to an older table on open.
_LATER_COLUMNS = (("environment", "TEXT"),)  # the environment it evaluates in (NULL: the default)
_COLUMNS = "id, name, created_at, revoked_at, environment"


@dataclass(frozen=True, slots=True)
class ClientSide:
    """Settings of client-side evaluation (``Settings.clientside``)."""

    origins: tuple[str, ...] = ()
    """Origins (``https://app.example.com``) whose pages may call the endpoint from a
    browser; ``("*",)`` allows any. Empty: none (server-side and mobile callers need no CORS)."""
    key_rate: float = 50.0
    """Requests per second one client key may make, on average (every user of an app shares it)."""
    key_burst: float = 200.0
    """Requests one key may make at once, above its rate."""
    address_rate: float = 2.0
    """Requests per second from one client address, on average."""
    address_burst: float = 30.0
    """Requests one address may make at once (a page load, a few tabs)."""

    def __post_init__(self) -> None:
        if not min(self.key_rate, self.key_burst, self.address_rate, self.address_burst) > 0:
            raise ValueError("client-side rates and bursts must be positive")
        if min(self.key_burst, self.address_burst) < 1:  # a bucket never holding 1 token admits nothing
            raise ValueError("client-side bursts must be at least 1 request")
        for origin in self.origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path), nor '*'")


class ClientKeyError(FlagstaffError):
    """A client key operation was refused (no name, unknown id)."""


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A client key as listed (never its secret)."""

    id: str
    name: str
    created_at: float
    revoked_at: float | None
    environment: str | None = None
    """The environment whose flags it evaluates; ``None``: the default environment."""

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def environment_or(self, default: str) -> str:
        """The environment it is good in, given the name of the server's default one."""
        return self.environment if self.environment is not None else default

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "active": self.active,
            "environment": self.environment,
        }


def well_formed_key(key: str) -> bool:
    """Whether ``key`` has a client key's shape (checked before any lookup)."""
    return bool(_FORMAT.match(key))


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ClientKeyStore:
    """Client keys in SQLite (the token database's file, its own table). Thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        # Opened at first use: a token database that cannot take the new table (read-only)
        # leaves the rest of the server working; client evaluation then answers 503.
        if self._closed:
            raise StoreUnavailable(f"the client key table in {self.path} is closed")
        if self._conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            try:
                conn.executescript(_SCHEMA)
                have = {row[1] for row in conn.execute("PRAGMA table_info(client_keys)")}
                for column, declaration in _LATER_COLUMNS:
                    if column not in have:
                        conn.execute(f"ALTER TABLE client_keys ADD COLUMN {column} {declaration}")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self._connection().execute(sql, params)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the client key table in {self.path}: {exc}") from None

    def create(self, name: str, environment: str | None = None) -> tuple[ClientKey, str]:
        """A new key for ``environment`` (``None``: the default one): its listing and its
        text (shown once; only its hash is kept)."""
        if not name.strip():
            raise ClientKeyError("a client key needs a name (the app that ships it)")
        if environment is not None and not environment.strip():
            raise ClientKeyError("a client key's environment, when given, needs a name")
        while True:
            key_id = secrets.token_hex(4)
            key = f"fsc_{key_id}_{secrets.token_urlsafe(32)}"
            now = time.time()
            try:
                self._run(
                    "INSERT INTO client_keys (id, name, hash, created_at, environment)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key_id, name, _hash(key), now, environment),
                )
            except sqlite3.IntegrityError:  # the id is taken: draw again
                continue
            return ClientKey(key_id, name, now, None, environment), key

    def verify(self, key: str) -> ClientKey | None:
        """The active key matching ``key``, or ``None`` (malformed, unknown, revoked)."""
        match = _FORMAT.match(key)
        if match is None:
            return None
        row = self._run(f"SELECT {_COLUMNS}, hash FROM client_keys WHERE id = ?", (match[1],)).fetchone()
        if row is None or not hmac.compare_digest(row[5], _hash(key)) or row[3] is not None:
            return None
        return ClientKey(*row[:5])

    def list(self) -> list[ClientKey]:
        rows = self._run(f"SELECT {_COLUMNS} FROM client_keys ORDER BY created_at")
        return [ClientKey(*r) for r in rows.fetchall()]

    def get(self, key_id: str) -> ClientKey | None:
        """The key with id ``key_id`` (revoked or not), or ``None``."""
        row = self._run(f"SELECT {_COLUMNS} FROM client_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else ClientKey(*row)

    def revoke(self, key_id: str) -> ClientKey:
        """Revoke a key (idempotent); it stops working at the next request."""
        self._run(
            "UPDATE client_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id)
        )
        info = self.get(key_id)
        if info is None:
            raise ClientKeyError(f"no client key with id {key_id!r}")
        return info

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()


class TokenBuckets:
    """One token bucket per name (a key id, an address): ``rate`` tokens a second, at most
    ``burst`` held. :meth:`take` spends one, or says how long until one is there.
    Thread-safe; at most ``limit`` names are remembered (the least recently seen go first:
    a forgotten name starts with a full bucket, which errs on the side of answering)."""

    def __init__(self, rate: float, burst: float, *, limit: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.limit = limit
        self._lock = threading.Lock()
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def take(self, name: str, now: float | None = None) -> float:
        """Spend a token of ``name``'s bucket: 0.0 if there was one, else the seconds to wait."""
        at = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(name, (self.burst, at))
            tokens = min(self.burst, tokens + (at - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[name] = (tokens, at)
            if len(self._buckets) > self.limit:
                self._buckets.popitem(last=False)
            return wait


def cors_headers(origin: str | None, allowed: tuple[str, ...]) -> dict[str, str]:
    """The CORS answer headers for a request from ``origin``: none unless it is allowed.
    Credentials are never allowed (the key travels in a header, not a cookie)."""
    headers = {"Vary": "Origin"}
    if origin is None or not allowed:
        return headers
    if "*" in allowed:
        headers["Access-Control-Allow-Origin"] = "*"
    elif origin in allowed:
        headers["Access-Control-Allow-Origin"] = origin
    else:
        return headers
    headers["Access-Control-Expose-Headers"] = "ETag, Retry-After"
    return headers
