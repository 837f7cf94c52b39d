"""People: a local user store with hashed passwords, roles per environment, and sessions.

A user has a name, a password and a role in each environment it may use
(``viewer``, ``editor``, ``approver``, ``admin``: :mod:`flagstaff.http.roles`);
a role given for ``"*"`` holds in every environment not named otherwise. Users
log in to the dashboard with the form on ``/login`` and are then recorded by
name in every history entry they cause.

Passwords are stored as ``scrypt$N$r$p$salt$hash`` (:func:`hashlib.scrypt`,
N=2**14, r=8, p=1, a 16-byte random salt per user, a 32-byte hash), and checked
with :func:`hmac.compare_digest`. An unknown name costs the same scrypt run as a
wrong password, so timing does not tell which names exist.

The database is SQLite, beside the token database (``flagstaff.db.tokens`` ->
``flagstaff.db.users``; :func:`default_user_db`). Sessions are rows too (the
SHA-256 of the cookie's random secret, an expiry, a revocation), so logging out,
removing, disabling a user or changing its password ends its sessions server-side. A
disabled user is kept (name, roles, history) but neither logs in, by password or single
sign-on, nor keeps a session until enabled again. Like the
token database, a write that cannot be made raises
:class:`~flagstaff.http.tokens.TokenStoreUnavailable` (HTTP 503, CLI exit 5).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from flagstaff.errors import FlagstaffError
from flagstaff.http.roles import Permission
from flagstaff.http.tokens import Principal, TokenStoreUnavailable, hash_token

__all__ = [
    "MIN_PASSWORD",
    "SESSION_PREFIX",
    "User",
    "UserError",
    "UserStore",
    "default_user_db",
    "hash_password",
    "verify_password",
]

MIN_PASSWORD = 10
"""Shortest password accepted."""
SESSION_PREFIX = "u."
"""A user session's cookie starts with this (a token session's never does): one lookup, not two."""

_N, _R, _P = 2**14, 8, 1  # scrypt cost: about 16 MiB and 30-60 ms a check
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    password   TEXT NOT NULL,
    created_at REAL NOT NULL,
    changed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS roles (
    name        TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    role        TEXT NOT NULL,
    PRIMARY KEY (name, environment)
);
CREATE TABLE IF NOT EXISTS sessions (
    hash       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL
);
"""
# Added after the first release: (column, declaration), added to an older users table on open.
_LATER_COLUMNS = (("disabled_at", "REAL"),)  # when an admin disabled the user (NULL: enabled)


class UserError(FlagstaffError):
    """A user operation was refused (unknown or taken name, short password, bad role)."""


@dataclass(frozen=True, slots=True)
class User:
    """A user as listed: never the password hash."""

    name: str
    roles: tuple[tuple[str, Permission], ...]  # (environment or "*", role), sorted
    created_at: float
    disabled: bool = False
    """Disabled by an admin: no log-in, no session, roles kept for when it is enabled again."""

    def principal(self) -> Principal:
        """The user as the server's :class:`~flagstaff.http.tokens.Principal`: its roles as grants."""
        top = max((level for _, level in self.roles), default=Permission.READ)
        return Principal(self.name, None, top, "user", self.roles)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "roles": {env: level.role for env, level in self.roles},
            "created_at": self.created_at,
            "disabled": self.disabled,
        }


def default_user_db(token_db: str) -> str:
    """The user database beside the token database (``X.tokens`` -> ``X.users``)."""
    if token_db == ":memory:":
        return ":memory:"
    return token_db.removesuffix(".tokens") + ".users"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The stored form of ``password``: ``scrypt$N$r$p$salt$hash`` (base64), a fresh salt each time."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (:func:`hash_password`'s form), compared in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


# The stored "password" of a single sign-on user: not a hash, so verify_password never accepts it.
_NO_PASSWORD = "!sso"

# Checked against when the name is unknown, so that a miss costs what a wrong password costs.
_DUMMY = hash_password("not a password", salt=b"\0" * 16)


class UserStore:
    """Users, their roles and their sessions in one SQLite file (``":memory:"`` for tests). Thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
            have = {row[1] for row in self._conn.execute("PRAGMA table_info(users)")}
            for column, declaration in _LATER_COLUMNS:
                if column not in have:
                    self._conn.execute(f"ALTER TABLE users ADD COLUMN {column} {declaration}")
        except sqlite3.Error as exc:
            raise TokenStoreUnavailable(f"cannot open the user database {path}: {exc}") from None

    def _write(self, *statements: tuple[str, tuple[object, ...]]) -> int:
        """Run writes in one transaction; the rows the last changed. Failing: TokenStoreUnavailable."""
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    count = 0
                    for sql, params in statements:
                        count = self._conn.execute(sql, params).rowcount
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return count
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise TokenStoreUnavailable(f"the user database {self.path} cannot be written: {exc}") from None

    # ----------------------------------------------------------------------- users

    def add(self, name: str, password: str, roles: Mapping[str, Permission] | None = None) -> User:
        """A new user with ``roles`` (environment or ``"*"`` -> level; none: no access yet)."""
        if not _NAME.fullmatch(name):  # fullmatch: "$" alone admits a trailing newline
            raise UserError(f"bad user name {name!r}: 1 to 64 letters, digits, '.', '_', '@', '+' or '-'")
        stored = hash_password(_checked_password(password))
        now = time.time()
        inserts = [
            ("INSERT INTO roles (name, environment, role) VALUES (?, ?, ?)", (name, env, level.role))
            for env, level in (roles or {}).items()
        ]
        try:
            self._write(
                ("INSERT INTO users (name, password, created_at, changed_at) VALUES (?, ?, ?, ?)",
                 (name, stored, now, now)),
                *inserts,
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise UserError(f"there is already a user named {name!r}") from None
        return self._need(name)

    def external(self, name: str, role: Permission | None) -> User:
        """A user who signs in through single sign-on (:mod:`flagstaff.http.oidc`): created at the
        first sign-in with no password (the form never admits it) and ``role`` in every
        environment (``None``: no role until an admin gives one); later sign-ins change nothing."""
        user = self.get(name)
        if user is not None:
            if user.disabled:
                raise UserError(f"the user {name!r} is disabled: an admin can enable it again")
            return user
        if not _NAME.fullmatch(name):  # fullmatch: "$" alone admits a trailing newline
            raise UserError(f"the single sign-on name {name!r} cannot name a user here")
        now = time.time()
        grants = [] if role is None else [("INSERT INTO roles (name, environment, role) VALUES (?, ?, ?)",
                                           (name, "*", role.role))]  # fmt: skip
        with contextlib.suppress(sqlite3.IntegrityError):  # signed in twice at once: the other one did
            self._write(
                ("INSERT INTO users (name, password, created_at, changed_at) VALUES (?, ?, ?, ?)",
                 (name, _NO_PASSWORD, now, now)),
                *grants,
            )  # fmt: skip
        return self._need(name)

    def get(self, name: str) -> User | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT name, created_at, disabled_at FROM users WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                return None
            grants = self._conn.execute(
                "SELECT environment, role FROM roles WHERE name = ? ORDER BY environment", (name,)
            ).fetchall()
        roles = tuple((env, Permission.parse(role)) for env, role in grants)
        return User(row[0], roles, float(row[1]), row[2] is not None)

    def _need(self, name: str) -> User:
        user = self.get(name)
        if user is None:
            raise UserError(f"no user named {name!r}")
        return user

    def list(self) -> list[User]:
        with self._lock:
            names = [r[0] for r in self._conn.execute("SELECT name FROM users ORDER BY name")]
        return [u for u in map(self.get, names) if u is not None]

    def remove(self, name: str) -> None:
        """Remove a user: its roles go, and its sessions end at once."""
        self._need(name)
        self._write(
            ("UPDATE sessions SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (time.time(), name)),
            ("DELETE FROM users WHERE name = ?", (name,)),
        )

    def set_disabled(self, name: str, disabled: bool) -> User:
        """Disable ``name`` (its sessions end at once; it cannot log in) or enable it again
        (its roles as they were). Idempotent."""
        self._need(name)
        now = time.time()
        if disabled:
            self._write(
                ("UPDATE users SET disabled_at = ? WHERE name = ? AND disabled_at IS NULL", (now, name)),
                ("UPDATE sessions SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name)),
            )
        else:
            self._write(("UPDATE users SET disabled_at = NULL WHERE name = ?", (name,)))
        return self._need(name)

    def set_password(self, name: str, password: str) -> None:
        """Change a user's password; its sessions end (log in again with the new one)."""
        self._need(name)
        stored = hash_password(_checked_password(password))
        now = time.time()
        self._write(
            ("UPDATE users SET password = ?, changed_at = ? WHERE name = ?", (stored, now, name)),
            ("UPDATE sessions SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name)),
        )

    def set_role(self, name: str, environment: str, role: Permission | None) -> User:
        """Give ``name`` ``role`` in ``environment`` (``"*"``: every one not named); ``None`` takes it away.
        Effective at the user's next request (sessions read the roles each time). The caller checks
        the environment's name (:func:`flagstaff.http.environments.check_name`; the CLI does)."""
        self._need(name)
        if role is None:
            self._write(("DELETE FROM roles WHERE name = ? AND environment = ?", (name, environment)))
        else:
            self._write(
                ("INSERT INTO roles (name, environment, role) VALUES (?, ?, ?)"
                 " ON CONFLICT (name, environment) DO UPDATE SET role = excluded.role",
                 (name, environment, role.role)),
            )  # fmt: skip
        return self._need(name)

    def check_password(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else ``None`` (same cost for an unknown name)."""
        with self._lock:
            row = self._conn.execute("SELECT password FROM users WHERE name = ?", (name,)).fetchone()
        ok = verify_password(password, _DUMMY if row is None else str(row[0]))
        user = self.get(name) if ok and row is not None else None
        return None if user is None or user.disabled else user

    # ----------------------------------------------------------------------- sessions

    def open_session(self, name: str, seconds: float) -> str:
        """A new session for ``name`` lasting ``seconds``: the cookie's value (starts with ``u.``)."""
        secret = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        self._write(
            ("INSERT INTO sessions (hash, name, created_at, expires_at) VALUES (?, ?, ?, ?)",
             (hash_token(secret), name, now, now + seconds)),
            ("DELETE FROM sessions WHERE expires_at < ?", (now - 86400,)),
        )  # fmt: skip
        return secret

    def session(self, secret: str) -> User | None:
        """The user of a live session, or ``None`` (unknown, expired, logged out, user removed)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT name, expires_at, revoked_at FROM sessions WHERE hash = ?", (hash_token(secret),)
            ).fetchone()
        if row is None or row[2] is not None or row[1] <= time.time():
            return None
        user = self.get(str(row[0]))
        return None if user is None or user.disabled else user

    def end_session(self, secret: str) -> None:
        self._write(
            ("UPDATE sessions SET revoked_at = ? WHERE hash = ? AND revoked_at IS NULL",
             (time.time(), hash_token(secret))),
        )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _checked_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    return password
