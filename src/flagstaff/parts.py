"""Segments stored in parts: a member list too large for one document, in every store.

A document is capped at :data:`~flagstaff.document.MAX_DOCUMENT_BYTES` (4 MiB), and
some stores hold less: a ZooKeeper node about 1 MB, an etcd request 1.5 MiB by default,
a transaction (``multi``, ``Txn``) no more than one request. A segment of a million user
ids is about 14 MB. So the writer (:class:`flagstaff.admin.Admin`) stores the ``users``
of a segment whose document would be larger than :data:`PART_BYTES` in *parts*:

* each part is a small document of its own, under ``segment:NAME:part:DIGEST``
  (:func:`flagstaff.document.part_key`)::

      {"part_of": "NAME", "users": ["u1", "u2", ...]}

  at most :data:`PART_BYTES` of canonical JSON; ``DIGEST`` is the first 20 hex digits
  of the SHA-256 of that text, so a part's key names its content: a part is written
  once, never changed, and writing it again is a no-op;
* the segment's own document, the *head*, holds everything else and the digests of its
  parts, in order, instead of ``users``::

      {"description": "...", "groups": [...], "user_parts": ["9f2c...", "04ab..."]}

Write order (:meth:`Admin.set <flagstaff.admin.Admin.set>` and every other writer):
the parts first, each on its own and idempotent, then the head, compare-and-set on the
version read, as for any document; then the parts of that segment no head refers to
are deleted (best effort: a leftover part is harmless, logged, and deleted by the next
write of the segment). A reader following the store therefore sees a new head only
after its parts, and the head swaps the whole member list at once: no snapshot mixes
the old members and the new.

Readers (:class:`flagstaff.follower.Follower`) compile a head and its parts into one
:class:`~flagstaff.segments.Segment` holding one
:class:`~flagstaff.members.MemberSet` of all the members (about 16 MB for a million
ids); parts are never segments nor flags, and every list of segments leaves them out
(:func:`flagstaff.document.is_part_key`). A head whose part is missing, or does not
match its digest (written by another route), is an invalid document: the segment keeps
its last good version and ``status()`` names the part; it is read again when the part
arrives.

Why 512 KiB: under ZooKeeper's node limit (1 MB, with its history entry in the same
packet kept only while it fits) and etcd's request limit (1.5 MiB by default, the part
and its history entry in one request), with room for the key and framing. A segment in
parts may hold up to :data:`MAX_SEGMENT_BYTES` (64 MiB of canonical JSON, about 4.5
million ids of 11 characters); a larger one is refused.

History: a head's history entry names its parts by digest. The parts of older versions
are deleted once a newer head no longer uses them, so writing an old version back
(a rollback) is refused with a message naming the missing part unless its parts
still exist; apply the full member list again instead (``flagstaff apply``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring
from typing import Any

from flagstaff.document import (
    MAX_DOCUMENT_BYTES,
    decode_document,
    encode_document,
    part_key,
    part_owner,
    segment_key,
    segment_name,
)
from flagstaff.errors import Problem, ValidationError

__all__ = [
    "MAX_NAME_CHARS",
    "MAX_SEGMENT_BYTES",
    "PARTS_KEY",
    "PART_BYTES",
    "expand",
    "join",
    "parse_part",
    "part_digest",
    "split",
]

PART_BYTES = 512 * 1024
"""The largest part document, in bytes of canonical JSON; also the size above which a
segment's ``users`` go into parts (see the module doc for why this size)."""

MAX_SEGMENT_BYTES = 64 * 1024 * 1024
"""The largest segment, all of its parts together, as canonical JSON."""

PARTS_KEY = "user_parts"
"""The head's key holding the digests of its parts (instead of ``users``)."""

_DIGEST_CHARS = 20  # 80 bits of SHA-256: a collision between two parts of one segment is not a concern
_DIGEST = re.compile(r"[0-9a-f]{20}")

MAX_NAME_CHARS = 200 - len("segment:") - len(":part:") - _DIGEST_CHARS
"""The longest segment NAME that can be stored in parts: a part's key, like every key,
holds at most 200 characters (ZooKeeper's node name rule, :func:`~flagstaff.document.validate_name`)."""

_PART_KEYS = ("part_of", "users")

Lookup = Callable[[str], str | None]
"""``lookup(part key) -> the stored text``, or ``None`` when there is no such part."""


def part_digest(text: str) -> str:
    """The digest naming a part whose canonical text is ``text``."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def split(name: str, value: Any) -> tuple[Any, dict[str, str]]:
    """``(head, {part key: part text})`` for the segment ``name``'s document ``value``.

    A document that is at most :data:`PART_BYTES` (or has no ``users`` list) is its own
    head, with no part. Otherwise the ``users`` go into parts of at most ``PART_BYTES``
    each, in order, and the head lists their digests under ``user_parts``. The same
    document always gives the same parts. Raises :class:`ValidationError` when the
    document is over :data:`MAX_SEGMENT_BYTES`, its name too long for a part key, or its
    head still over ``MAX_DOCUMENT_BYTES``.
    """
    text = encode_document(value)
    total = _size(text)
    key = f"segment:{name}"
    if total > MAX_SEGMENT_BYTES:
        mib = MAX_SEGMENT_BYTES // (1024 * 1024)
        message = f"the segment is {total / (1024 * 1024):.1f} MiB, over the {mib} MiB a segment may hold"
        raise ValidationError([Problem("users", message)], flag=key)
    if total <= PART_BYTES or not isinstance(value, dict) or not isinstance(value.get("users"), list):
        return value, {}
    if not value["users"]:
        return value, {}
    if len(name) > MAX_NAME_CHARS:
        message = (
            f"a segment this large ({total:,} bytes) is stored in parts, and then its name "
            f"may have at most {MAX_NAME_CHARS} characters, not {len(name)}"
        )
        raise ValidationError([Problem("name", message)], flag=key)
    users = [str(u) for u in value["users"]]
    empty = encode_document({"part_of": name, "users": []})
    budget = PART_BYTES - _size(empty)
    parts: dict[str, str] = {}
    digests: list[str] = []
    start, used = 0, 0
    # Each item's bytes in the canonical text, and its comma (C speed: a million ids).
    quoted = map(encode_basestring, users)
    sizes = [n + 1 for n in (map(len, quoted) if text.isascii() else map(_size, quoted))]
    for i, size in enumerate(sizes):
        if size > budget:
            message = f"users[{i}] is {size:,} bytes, longer than a part ({PART_BYTES:,} bytes) holds"
            raise ValidationError([Problem(f"users[{i}]", message)], flag=key)
        if used + size > budget + 1:  # the last item has no comma
            digests.append(_add_part(name, users[start:i], parts))
            start, used = i, 0
        used += size
    digests.append(_add_part(name, users[start:], parts))
    head = {k: v for k, v in value.items() if k != "users"}
    head[PARTS_KEY] = digests
    head_size = _size(encode_document(head))
    if head_size > MAX_DOCUMENT_BYTES:
        message = (
            f"without its users the segment is still {head_size:,} bytes, over the "
            f"{MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB a document may hold: only users are stored in parts"
        )
        raise ValidationError([Problem("", message)], flag=key)
    return head, parts


def _add_part(name: str, users: list[str], parts: dict[str, str]) -> str:
    text = encode_document({"part_of": name, "users": users})
    digest = part_digest(text)
    parts[part_key(name, digest)] = text
    return digest


def parse_part(key: str, raw: str) -> list[str]:
    """The users of the part stored under ``key``, validated: an object of ``part_of``
    (the segment's NAME, as in the key) and ``users`` (strings), whose canonical text has
    the key's digest. Raises :class:`ValidationError` naming what is wrong."""
    value = decode_document(raw) if isinstance(raw, str) else raw
    problems: list[Problem] = []
    owner = part_owner(key)
    if not isinstance(value, dict):
        problems.append(Problem("", 'a part must be an object {"part_of": NAME, "users": [...]}'))
    else:
        for k in value:
            if k not in _PART_KEYS:
                problems.append(Problem(str(k), "unknown key in a part (part_of, users)"))
        if value.get("part_of") != owner:
            problems.append(Problem("part_of", f"must be {owner!r}, the segment named by the key"))
        users = value.get("users")
        if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
            problems.append(Problem("users", "must be a list of strings"))
        elif not problems:
            digest = key.rpartition(":")[2]
            actual = part_digest(encode_document(value))
            if actual != digest:
                problems.append(
                    Problem("", f"its content has the digest {actual}, not {digest} as its key says")
                )
    if problems:
        raise ValidationError(problems, flag=key)
    assert isinstance(value, dict)
    listed: list[str] = value["users"]
    return listed


def join(
    name: str, digests: Any, lookup: Lookup | Mapping[str, str]
) -> tuple[list[str] | None, list[Problem]]:
    """The ``users`` of the segment ``name`` from its parts: ``(users, [])``, or
    ``(None, problems)`` naming each part that is missing or invalid."""
    get = lookup.get if isinstance(lookup, Mapping) else lookup
    if not isinstance(digests, list) or not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in digests):
        return None, [Problem(PARTS_KEY, "must be a list of part digests (20 hex digits each)")]
    users: list[str] = []
    problems: list[Problem] = []
    for i, digest in enumerate(digests):
        key = part_key(name, digest)
        raw = get(key)
        path = f"{PARTS_KEY}[{i}]"
        if raw is None:
            problems.append(Problem(path, f"the part {key!r} is missing"))
            continue
        try:
            users += parse_part(key, raw)
        except ValidationError as exc:
            why = "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems)
            problems.append(Problem(path, f"the part {key!r} is invalid: {why}"))
    return (None, problems) if problems else (users, [])


def expand(name: str, value: Any, lookup: Lookup | Mapping[str, str]) -> Any:
    """The segment document ``value`` with its users back in place of ``user_parts``,
    read through ``lookup`` (a document without ``user_parts`` is returned as it is).
    Raises :class:`ValidationError` naming each part that is missing or invalid."""
    if not isinstance(value, dict) or PARTS_KEY not in value or "users" in value:
        return value
    bare = segment_name(name)
    users, problems = join(bare, value[PARTS_KEY], lookup)
    if users is None:
        problems.append(
            Problem(
                PARTS_KEY,
                "a version stored in parts can be written back only while its parts exist (the parts "
                "no newer version uses are deleted): write the full member list instead",
            )
        )
        raise ValidationError(problems, flag=segment_key(bare))
    out: dict[str, Any] = {}
    for k, v in value.items():
        if k == PARTS_KEY:
            out["users"] = users
        else:
            out[k] = v
    return out
