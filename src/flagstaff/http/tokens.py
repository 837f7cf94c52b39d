"""API tokens: created and revoked by an operator, stored hashed in SQLite.

A token looks like ``fst_<id>_<secret>``: ``id`` (8 hex digits) names it in
listings, audit records and ``flagstaff token revoke``; ``secret`` is 32 random
bytes (url-safe base64). Only the SHA-256 of the whole token is stored, so the
database leaks nothing that can be presented back; a fast hash is enough for a
secret of 256 random bits (there is nothing to brute-force).

Every check reads the database (one indexed lookup), so a token revoked by
another process (``flagstaff token revoke``) stops working at the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import urlsplit

from flagstaff.errors import FlagstaffError

__all__ = ["Scope", "TokenError", "TokenInfo", "TokenStore", "default_token_db", "hash_token", "well_formed"]

_FORMAT = re.compile(r"^fst_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    scope      TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used  REAL
);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class TokenError(FlagstaffError):
    """A token operation was refused (unknown id, bad scope)."""


class Scope(IntEnum):
    """What a token may do; each scope includes the ones below it."""

    READ = 1  # read flags, history, evaluate, the event stream
    WRITE = 2  # create, change, roll back and delete flags
    ADMIN = 3  # manage tokens

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Scope:
        try:
            return cls[text.upper()]
        except KeyError:
            raise TokenError(f"unknown scope {text!r}: use read, write or admin") from None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never its secret."""

    id: str
    name: str
    scope: Scope
    created_at: float
    revoked_at: float | None
    last_used: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope.label,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used": self.last_used,
            "active": self.active,
        }


def default_token_db(store_url: str) -> str:
    """Where tokens live by default: beside a SQLite store's file
    (``flags.db`` -> ``flags.db.tokens``), in memory for a memory store, else
    ``flagstaff.db.tokens`` in the working directory."""
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and parts.path not in ("", "/", "/:memory:"):
        return parts.path[1:] + ".tokens"
    if parts.scheme == "memory":
        return ":memory:"
    return "flagstaff.db.tokens"


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    """Whether ``token`` has the shape of a flagstaff token (checked before any lookup)."""
    return bool(_FORMAT.match(token))


class TokenStore:
    """Tokens in one SQLite file (``":memory:"`` for tests). Thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)

    def create(self, name: str, scope: Scope) -> tuple[TokenInfo, str]:
        """A new token: its listing and its secret text (shown once, never stored)."""
        if not name.strip():
            raise TokenError("a token needs a name (who or what uses it)")
        while True:
            token_id = secrets.token_hex(4)
            token = f"fst_{token_id}_{secrets.token_urlsafe(32)}"
            now = time.time()
            try:
                with self._lock:
                    self._conn.execute(
                        "INSERT INTO tokens (id, name, scope, hash, created_at) VALUES (?, ?, ?, ?, ?)",
                        (token_id, name, scope.label, hash_token(token), now),
                    )
            except sqlite3.IntegrityError:  # an id already taken: draw again
                continue
            return TokenInfo(token_id, name, scope, now, None, None), token

    def verify(self, token: str) -> TokenInfo | None:
        """The active token matching ``token``, or ``None`` (unknown, revoked, malformed)."""
        if not well_formed(token):
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT id, name, scope, hash, created_at, revoked_at, last_used FROM tokens WHERE id = ?",
                (token[4:12],),
            ).fetchone()
        # Compare the hashes in constant time, so timing says nothing about a near miss.
        if row is None or not hmac.compare_digest(row[3], hash_token(token)) or row[5] is not None:
            return None
        return TokenInfo(row[0], row[1], Scope.parse(row[2]), row[4], row[5], row[6])

    def get(self, token_id: str) -> TokenInfo | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, name, scope, created_at, revoked_at, last_used FROM tokens WHERE id = ?",
                (token_id,),
            ).fetchone()
        return None if row is None else _info(row)

    def touch(self, token_id: str) -> None:
        """Record that a token was used (at most once a minute, to keep writes rare)."""
        now = time.time()
        with self._lock:
            self._conn.execute(
                "UPDATE tokens SET last_used = ? WHERE id = ? AND (last_used IS NULL OR last_used < ?)",
                (now, token_id, now - 60),
            )

    def list(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, name, scope, created_at, revoked_at, last_used FROM tokens ORDER BY created_at"
            ).fetchall()
        return [_info(r) for r in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a token; effective for the very next request. Idempotent."""
        with self._lock:
            self._conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), token_id),
            )
        info = self.get(token_id)
        if info is None:
            raise TokenError(f"no token with id {token_id!r}")
        return info

    def secret(self, key: str) -> bytes:
        """A random secret kept in the database (created on first use): signs sessions."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, secrets.token_hex(32))
            )
            row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return bytes.fromhex(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _info(row: tuple[str, str, str, float, float | None, float | None]) -> TokenInfo:
    return TokenInfo(row[0], row[1], Scope.parse(row[2]), row[3], row[4], row[5])
