"""API tokens: created and revoked by an operator, stored hashed in SQLite.

A token looks like ``fst_<id>_<secret>``: ``id`` (8 hex digits) names it in
listings, audit records and ``flagstaff token revoke``; ``secret`` is 32 random
bytes (url-safe base64). Only the SHA-256 of the whole token is stored, so the
database leaks nothing that can be presented back; a fast hash is enough for a
secret of 256 random bits (there is nothing to brute-force).

Every check reads the database (one indexed lookup), so a token revoked by
another process (``flagstaff token revoke``) stops working at the next request.

A *login* token (the link ``flagstaff serve --login-link`` prints) carries its own
expiry in the database, so it dies by itself even if the server is killed before it
can revoke it; it is good for one exchange against a dashboard session and never as
a bearer token. Sessions live here too (only the SHA-256 of the cookie's secret),
with an expiry, so logging out revokes one server-side.

A full disk or an I/O error never turns a read into an error: the ``last_used``
stamp is skipped (and logged once). Writes (create, revoke, log in, log out) raise
:class:`TokenStoreUnavailable`, a :class:`~flagstaff.errors.StoreUnavailable`: the
API answers 503 and the CLI exits 5.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from flagstaff.errors import FlagstaffError, StoreUnavailable
from flagstaff.http.roles import Permission

__all__ = [
    "Permission",
    "Principal",
    "TokenError",
    "TokenInfo",
    "TokenStore",
    "TokenStoreUnavailable",
    "default_token_db",
    "hash_token",
    "well_formed",
]

log = logging.getLogger("flagstaff.http.tokens")

TOUCH_INTERVAL = 60.0
"""Seconds between two ``last_used`` writes for one token: reads stay reads."""

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
CREATE TABLE IF NOT EXISTS sessions (
    hash       TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL
);
"""

# Added after the first release: (column, declaration), added to an older database on open.
_LATER_COLUMNS = (
    ("expires_at", "REAL"),  # a login token's deadline (NULL: an API token, no expiry)
    ("kind", "TEXT NOT NULL DEFAULT 'api'"),  # 'api' or 'login'
    ("used_at", "REAL"),  # when a login token was exchanged for a session
    ("environments", "TEXT"),  # JSON list of the environments it is good in (NULL: every one)
)
_COLUMNS = "id, name, scope, created_at, revoked_at, last_used, expires_at, kind, used_at, environments"


class TokenError(FlagstaffError):
    """A token operation was refused (unknown id, bad scope)."""


class TokenStoreUnavailable(StoreUnavailable):
    """The token database cannot be written (disk full, I/O error, locked)."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never its secret."""

    id: str
    name: str
    scope: Permission
    created_at: float
    revoked_at: float | None
    last_used: float | None
    expires_at: float | None = None
    kind: str = "api"
    used_at: float | None = None
    environments: tuple[str, ...] | None = None
    """The environments the token is good in (``None``: every one)."""

    @property
    def active(self) -> bool:
        """Usable now: not revoked, not expired, and (a login token) not yet exchanged."""
        if self.revoked_at is not None or self.used_at is not None:
            return False
        return self.expires_at is None or self.expires_at > time.time()

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope.label,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used": self.last_used,
            "expires_at": self.expires_at,
            "active": self.active,
            "environments": None if self.environments is None else list(self.environments),
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token or a user says you are: a name, a token id, what it may do, and how it
    was presented.

    ``scope`` is the level in every environment unless ``grants`` is given: then the
    level in environment ``E`` is the grant for ``E``, else the grant for ``"*"``, else
    none (:meth:`level_in`). :func:`flagstaff.http.auth.require` answers with a copy whose
    ``scope`` is the level in the request's environment.
    """

    name: str
    token_id: str | None  # None in open mode and for users
    scope: Permission
    via: str  # "bearer", "session", "open", or "user" (a user's session)
    grants: tuple[tuple[str, Permission], ...] | None = None

    @classmethod
    def of(cls, token: TokenInfo, via: str) -> Principal:
        grants = None if token.environments is None else tuple((e, token.scope) for e in token.environments)
        return cls(token.name, token.id, token.scope, via, grants)

    def level_in(self, environment: str) -> Permission | None:
        """What this principal may do in ``environment`` (``None``: nothing, not even read)."""
        if self.grants is None:
            return self.scope
        wildcard = None
        for env, level in self.grants:
            if env == environment:
                return level
            if env == "*":
                wildcard = level
        return wildcard


def default_token_db(store_url: str) -> str:
    """Where tokens live by default: beside a SQLite store's file
    (``flagstaff.db`` -> ``flagstaff.db.tokens``), in memory for a memory store, else
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
    """Tokens and sessions in one SQLite file (``":memory:"`` for tests). Thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}  # token id -> monotonic time of its last stamp
        self._touch_failing = False
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            have = {row[1] for row in self._conn.execute("PRAGMA table_info(tokens)")}
            for column, declaration in _LATER_COLUMNS:
                if column not in have:
                    self._conn.execute(f"ALTER TABLE tokens ADD COLUMN {column} {declaration}")
        except sqlite3.Error as exc:
            raise TokenStoreUnavailable(f"cannot open the token database {path}: {exc}") from None

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        """Run one write; the number of rows it changed. Full disk, I/O error: TokenStoreUnavailable."""
        try:
            with self._lock:
                return self._conn.execute(sql, params).rowcount
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise TokenStoreUnavailable(f"the token database {self.path} cannot be written: {exc}") from None

    def create(
        self,
        name: str,
        scope: Permission,
        *,
        expires_in: float | None = None,
        kind: str = "api",
        environments: Sequence[str] | None = None,
    ) -> tuple[TokenInfo, str]:
        """A new token: its listing and its secret text (shown once, never stored).

        ``expires_in`` (seconds) gives it a deadline kept in the database; ``kind``
        "login" makes it a one-use login token (see the module doc); ``environments``
        limits it to those environments (``None``: every one).
        """
        envs = None if environments is None else tuple(dict.fromkeys(environments))
        if envs is not None and not envs:
            raise TokenError("a token limited to environments needs at least one")
        if not name.strip():
            raise TokenError("a token needs a name (who or what uses it)")
        if kind not in ("api", "login"):
            raise TokenError(f"unknown token kind {kind!r}")
        while True:
            token_id = secrets.token_hex(4)
            token = f"fst_{token_id}_{secrets.token_urlsafe(32)}"
            now = time.time()
            expires = None if expires_in is None else now + expires_in
            try:
                self._write(
                    "INSERT INTO tokens (id, name, scope, hash, created_at, expires_at, kind, environments)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (token_id, name, scope.label, hash_token(token), now, expires, kind,
                     None if envs is None else json.dumps(list(envs))),
                )  # fmt: skip
            except sqlite3.IntegrityError:  # an id already taken: draw again
                continue
            return TokenInfo(token_id, name, scope, now, None, None, expires, kind, None, envs), token

    def _lookup(self, token: str) -> TokenInfo | None:
        if not well_formed(token):
            return None
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS}, hash FROM tokens WHERE id = ?", (token[4:12],)
            ).fetchone()
        # Compare the hashes in constant time, so timing says nothing about a near miss.
        if row is None or not hmac.compare_digest(row[10], hash_token(token)):
            return None
        return _info(row)

    def verify(self, token: str) -> TokenInfo | None:
        """The active API token matching ``token``, or ``None`` (unknown, revoked, expired,
        malformed, or a login token: those only open sessions)."""
        info = self._lookup(token)
        return info if info is not None and info.active and info.kind == "api" else None

    def exchange(self, token: str) -> TokenInfo | None:
        """The token behind a login attempt, or ``None``. A login token is used up here:
        of two concurrent exchanges of one link, exactly one succeeds."""
        info = self._lookup(token)
        if info is None or not info.active:
            return None
        if info.kind == "login":
            now = time.time()
            changed = self._write(
                "UPDATE tokens SET used_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL"
                " AND expires_at > ?",
                (now, info.id, now),
            )
            if changed != 1:
                return None
        return info

    def get(self, token_id: str) -> TokenInfo | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return None if row is None else _info(row)

    def touch(self, token_id: str) -> None:
        """Record that a token was used (at most once a minute, to keep writes rare).

        Never raises: a full disk or an I/O error skips the stamp (logged once until a
        stamp succeeds again), so reads keep working when nothing can be written.
        """
        now = time.monotonic()
        last = self._touched.get(token_id)
        if last is not None and now - last < TOUCH_INTERVAL:
            return
        if len(self._touched) > 100_000:  # many tokens: forget, the database also throttles
            self._touched.clear()
        self._touched[token_id] = now
        wall = time.time()
        try:
            with self._lock:
                self._conn.execute(
                    "UPDATE tokens SET last_used = ? WHERE id = ? AND (last_used IS NULL OR last_used < ?)",
                    (wall, token_id, wall - TOUCH_INTERVAL),
                )
        except sqlite3.Error as exc:
            if not self._touch_failing:
                log.warning("cannot record token use in %s (reads go on): %s", self.path, exc)
            self._touch_failing = True
        else:
            self._touch_failing = False

    def list(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at").fetchall()
        return [_info(r) for r in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a token; effective for the very next request. Idempotent."""
        self._write(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), token_id)
        )
        info = self.get(token_id)
        if info is None:
            raise TokenError(f"no token with id {token_id!r}")
        return info

    # ----------------------------------------------------------------------- sessions

    def open_session(self, token_id: str, seconds: float) -> str:
        """A new session for ``token_id`` lasting ``seconds``: its secret (the cookie's value)."""
        secret = secrets.token_urlsafe(32)
        now = time.time()
        self._write(
            "INSERT INTO sessions (hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (hash_token(secret), token_id, now, now + seconds),
        )
        # Sessions past their end are of no use to anyone: drop them while we are writing.
        self._write("DELETE FROM sessions WHERE expires_at < ?", (now - 86400,))
        return secret

    def session(self, secret: str) -> TokenInfo | None:
        """The token a live session was opened with, or ``None`` (unknown, expired,
        logged out, or its token revoked). A login token's session outlives the link's
        own expiry and single use, never a revocation."""
        with self._lock:
            row = self._conn.execute(
                "SELECT token_id, expires_at, revoked_at FROM sessions WHERE hash = ?", (hash_token(secret),)
            ).fetchone()
        if row is None or row[2] is not None or row[1] <= time.time():
            return None
        info = self.get(row[0])
        return info if info is not None and info.revoked_at is None else None

    def end_session(self, secret: str) -> None:
        """Revoke a session (log out): its cookie stops working at once, wherever it is kept."""
        self._write(
            "UPDATE sessions SET revoked_at = ? WHERE hash = ? AND revoked_at IS NULL",
            (time.time(), hash_token(secret)),
        )

    def secret(self, key: str) -> bytes:
        """A random secret kept in the database (created on first use): signs sessions."""
        query = "SELECT value FROM settings WHERE key = ?"
        with self._lock:
            row = self._conn.execute(query, (key,)).fetchone()
        if row is None:  # written once; later starts only read it (and so start on a full disk)
            fresh = secrets.token_hex(32)
            self._write("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, fresh))
            with self._lock:
                row = self._conn.execute(query, (key,)).fetchone()
        return bytes.fromhex(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _info(row: tuple[object, ...]) -> TokenInfo:
    return TokenInfo(
        str(row[0]),
        str(row[1]),
        Permission.parse(str(row[2])),
        float(row[3]),  # type: ignore[arg-type]
        row[4],  # type: ignore[arg-type]
        row[5],  # type: ignore[arg-type]
        row[6],  # type: ignore[arg-type]
        str(row[7]),
        row[8],  # type: ignore[arg-type]
        None if row[9] is None else tuple(json.loads(str(row[9]))),
    )
