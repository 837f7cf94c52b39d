"""Signed QA forcing: a ``?feature=`` value counts only when it carries a valid signature.

A ``url`` selector lets a request force a flag (or a variant) with ``?feature=NAME``. Left
unsigned, that is anyone's to type. A *forcing token* binds one feature value to an expiry
time with an HMAC-SHA256 made with a secret key the site keeps (``FLAGSTAFF_FORCE_KEY``);
the web integrations put only the values of valid tokens into ``Context.features``::

    token = sign("try_forced", key, ttl=3600)     # or: flagstaff force-token try_forced --ttl 1h
    verify(token, key)                            # "try_forced" (None once expired or altered)

The token is URL-safe text, ``VALUE.EXPIRY.SIG``: the value in base64url, the expiry in epoch
seconds, the signature in base64url (all without padding). What it guarantees:

* the value is signed, so a token made for one value cannot be replayed as another;
* an expired, truncated or altered token, or one made with another key, verifies to ``None``;
* a key shorter than :data:`MIN_KEY_BYTES` is refused (:class:`ForceKeyError`), both when
  signing and when verifying, so a guessable key never protects anything.

This module is pure (stdlib only); it never reads the clock unless ``now`` is left out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flagstaff.errors import ClientError

__all__ = [
    "KEY_ENV",
    "MAX_TOKEN_LENGTH",
    "MAX_VALUE_LENGTH",
    "MIN_KEY_BYTES",
    "ForceKeyError",
    "ForceToken",
    "check_key",
    "issue",
    "key_from_env",
    "parse_ttl",
    "sign",
    "verify",
]

KEY_ENV = "FLAGSTAFF_FORCE_KEY"
"""The environment variable the key is read from when none is given."""

MIN_KEY_BYTES = 16
"""A shorter key is refused: 128 bits is the least an HMAC key should carry."""

MAX_VALUE_LENGTH = 100
"""The longest feature value a token may carry (the request integrations' own bound)."""

MAX_TOKEN_LENGTH = 640
"""No token of a value within :data:`MAX_VALUE_LENGTH` is longer; longer text is not verified."""

# Changing this (or the message layout in _mac) invalidates every token in circulation.
_DOMAIN = b"flagstaff-force-v1\x00"

# VALUE.EXPIRY.SIG: base64url (no padding), decimal epoch seconds, a 32-byte MAC in base64url.
_TOKEN = re.compile(r"([A-Za-z0-9_-]+)\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


class ForceKeyError(ClientError, ValueError):
    """The forcing key is unusable (too short, or of the wrong type)."""


def check_key(key: bytes | str, *, source: str = "force key") -> bytes:
    """``key`` as bytes (a ``str`` is UTF-8); raises :class:`ForceKeyError` when it is
    shorter than :data:`MIN_KEY_BYTES` bytes. ``source`` names it in the message."""
    if isinstance(key, str):
        raw = key.encode()
    elif isinstance(key, bytes):
        raw = key
    else:
        raise ForceKeyError(f"{source} must be bytes or str, not {type(key).__name__}")
    if len(raw) < MIN_KEY_BYTES:
        raise ForceKeyError(
            f"{source} is {len(raw)} bytes; a forcing key needs at least {MIN_KEY_BYTES} "
            f"(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return raw


def key_from_env(environ: Mapping[str, str] | None = None, name: str = KEY_ENV) -> bytes | None:
    """The key in the environment variable ``name`` (``None`` when unset or empty);
    raises :class:`ForceKeyError` when it is too short."""
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        return None
    return check_key(value, source=f"${name}")


def sign(value: str, key: bytes | str, ttl: float, now: float | None = None) -> str:
    """A token forcing ``value`` until ``now + ttl`` (seconds; ``now`` defaults to the clock).

    Raises :class:`ForceKeyError` for a short key and ``ValueError`` for an empty or too long
    value or a ``ttl`` that is not positive.
    """
    raw_key = check_key(key)
    if not isinstance(value, str) or not value:
        raise ValueError("a forcing token needs a non-empty feature value")
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"feature value is {len(value)} characters; at most {MAX_VALUE_LENGTH}")
    if not ttl > 0:
        raise ValueError(f"ttl must be positive, not {ttl!r}")
    expiry = int((time.time() if now is None else now) + ttl)
    data = value.encode()
    return f"{_b64(data)}.{expiry}.{_b64(_mac(raw_key, data, expiry))}"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def parse_ttl(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``1h``, ``7d``; ``ValueError`` unless positive."""
    m = _DURATION.fullmatch(text.strip().lower())
    seconds = float(m[1]) * _UNITS[m[2] or "s"] if m else 0.0
    if not seconds > 0:
        raise ValueError(f"{text!r} is not a positive duration (e.g. 90s, 15m, 1h, 7d)")
    return seconds


@dataclass(frozen=True, slots=True)
class ForceToken:
    """A token as :func:`issue` made it, with what it forces and until when."""

    token: str
    value: str
    expires_at: int
    """Epoch seconds: the token verifies strictly before this instant."""

    def to_dict(self) -> dict[str, Any]:
        """What the CLI's ``--json`` (and an API answer) shows: ``expires`` is ISO 8601 UTC."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires_at))
        return {"token": self.token, "value": self.value, "expires": when, "expires_at": self.expires_at}


def issue(value: str, key: bytes | str, ttl: float, now: float | None = None) -> ForceToken:
    """:func:`sign`, with the value and the expiry alongside the token."""
    now = time.time() if now is None else now
    token = sign(value, key, ttl, now=now)
    return ForceToken(token, value, int(token.split(".")[1]))


def verify(token: str, key: bytes | str, now: float | None = None) -> str | None:
    """The value ``token`` forces, or ``None`` when it is malformed, altered, signed with
    another key or expired at ``now`` (default: the clock). Raises only for a bad key."""
    raw_key = check_key(key)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    try:
        data = _unb64(match[1])
    except (binascii.Error, ValueError):
        return None
    expiry = int(match[2])
    # Compared as text, as sign() wrote it: base64 leaves spare bits in a last character, so
    # comparing decoded bytes would take an altered token (its last character changed only in
    # those bits) as the same one. One spelling of a token verifies, no other.
    if _b64(data) != match[1] or not hmac.compare_digest(match[3], _b64(_mac(raw_key, data, expiry))):
        return None
    if (time.time() if now is None else now) >= expiry:
        return None
    try:
        value = data.decode()
    except UnicodeDecodeError:  # cannot be: we signed it; but never raise on request input
        return None
    return value or None


def _mac(key: bytes, value: bytes, expiry: int) -> bytes:
    # The value is length-prefixed so no (value, expiry) pair signs like another.
    message = b"%s%d:%s:%d" % (_DOMAIN, len(value), value, expiry)
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
