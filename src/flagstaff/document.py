"""The wire format of a flag document: names, keys, limits, encoding and the schema.

This module holds the wire names of a flag document (the key tables below)
and its text form. The format is described in ``docs/flags.md`` and published as a JSON Schema
(``flagstaff/schema/flag.schema.json``). In short, a flag document is one of:

* ``"on"`` / ``true``: on for everyone; ``"off"`` / ``false``: off for everyone;
* a number ``p`` in [0, 100]: on for ``p`` percent of users (``1`` means 1%);
* an object whose selectors OR together, e.g.
  ``{"admin": true, "users": ["umbrae"], "percent_loggedin": 25}``, optionally with
  ``deny``, ``prerequisites``, ordered ``targeting`` rules, a ``default`` serve,
  ``values`` and ``bucket_by`` any attribute (the issue-14 keys; see :data:`TOP_KEYS`
  and the key tables below).

A segment document (``segment:NAME``, :data:`SEGMENT_KEYS`) has its own schema,
``flagstaff/schema/segment.schema.json`` (:func:`segment_schema`).

It knows the text, not the meaning: :mod:`flagstaff.model` validates a decoded
document into a :class:`~flagstaff.model.Flag`. Stores import this module only
(to decode, encode and check names), never the compiler. Nothing here imports
the rest of the engine.

Guarantees: :func:`decode_document` and :func:`check_new_name` raise
:class:`~flagstaff.errors.ValidationError` and never repair input silently;
:func:`encode_document` is canonical (the same document, the same text);
:func:`printable_text` always returns text that encodes as UTF-8.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable
from importlib import resources
from typing import Any

from flagstaff.errors import Problem, ValidationError

__all__ = [
    "CLAUSE_KEYS",
    "DENY_KEYS",
    "EXPERIMENT_KEYS",
    "GROUP_SELECTORS",
    "GUARDRAIL_KEYS",
    "LAYER_KEYS",
    "MAX_DOCUMENT_BYTES",
    "META_KEYS",
    "NEW_NAME_CHARS",
    "PART_MARK",
    "PERCENT_KEYS",
    "PREREQUISITE_KEYS",
    "RAMP_KEYS",
    "RAMP_STEP_KEYS",
    "SCHEDULE_KEYS",
    "SEGMENT_KEYS",
    "SEGMENT_PREFIX",
    "SELECTOR_KEYS",
    "SERVE_KEYS",
    "TARGETING_KEYS",
    "TOP_KEYS",
    "check_new_name",
    "decode_document",
    "encode_document",
    "is_part_key",
    "is_segment_key",
    "json_schema",
    "name_key",
    "part_key",
    "part_owner",
    "printable_text",
    "segment_key",
    "segment_name",
    "segment_schema",
    "validate_name",
]

# What a stored flag name may be, for reading: anything without whitespace, '/' or control
# characters. Names written before the stricter rule below stay readable under this one.
_NAME = re.compile(r"^[^\s/\x00-\x1f\x7f.][^\s/\x00-\x1f\x7f]{0,199}$")

# What a NEW flag name may be (docs/flags.md, "Flag names"). A name travels in URLs, HTTP
# headers, shell commands, store keys and log lines, and people compare names by eye: ASCII
# letters, digits, '.', '_' and '-' only, so no zero-width, bidi, control or look-alike
# non-ASCII character can make two flags look the same or a name render backwards.
NEW_NAME_CHARS = "A-Z a-z 0-9 . _ -"
_NEW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_NEW_NAME_CHAR = re.compile(r"[A-Za-z0-9._-]")
# name_key folds these together: the separators, and the digits that read as letters.
_LOOKALIKE = str.maketrans({"-": "_", ".": "_", "0": "o", "1": "l", "i": "l"})

# Selector keys, in the order evaluation tries them. They OR together; the
# order only decides which one the reason names when several match.
GROUP_SELECTORS = ("admin", "employee", "gold", "beta")
SELECTOR_KEYS = (
    "url",  # first: a forced variant wins over every other selector, as in reddit
    "everyone",
    *GROUP_SELECTORS,
    "groups",
    "loggedin",
    "loggedout",
    "users",
    "regex",
    "subreddits",
    "locations",
    "subdomains",
    "oauth_clients",
    "rules",
)
PERCENT_KEYS = ("percentage", "percent_loggedin", "percent_loggedout")
META_KEYS = ("description", "owner", "kind", "tags", "created", "archived")
TOP_KEYS = frozenset(
    {
        "enabled",
        *META_KEYS,
        "salt",
        "bucketing",
        "bucket_by",
        "schedule",
        *SELECTOR_KEYS,
        *PERCENT_KEYS,
        "variants",
        "experiment",
        "deny",
        "prerequisites",
        "targeting",
        "default",
        "values",
        "ramp",
        "guardrails",
        "client_visible",
    }
)
EXPERIMENT_KEYS = frozenset({"experiment_id", "variants", "enabled", "layer", "holdout", *SELECTOR_KEYS})
CLAUSE_KEYS = frozenset({"attribute", "op", "value", "negate"})
SCHEDULE_KEYS = ("start", "end")
# Issue 15: a progressive rollout (``ramp``) and the guardrails that halt it.
RAMP_KEYS = ("steps",)
RAMP_STEP_KEYS = ("at", "percentage")
GUARDRAIL_KEYS = ("metric", "max_increase", "min_units")
# The keys of the issue-14 objects, in the order evaluation reads them.
DENY_KEYS = ("users", "groups", "segments", "rules")
TARGETING_KEYS = ("name", "groups", "users", "segments", "when", "not_segments", "serve")
SERVE_KEYS = ("variant", "percentage", "variants", "bucket_by")
PREREQUISITE_KEYS = ("flag", "variant", "variants", "enabled")
LAYER_KEYS = ("name", "range")
SEGMENT_KEYS = (
    "description",
    "owner",
    "tags",
    "users",
    "user_parts",  # a large segment's users, stored in parts (flagstaff.parts)
    "groups",
    "rules",
    "exclude_users",
    "percentage",
    "salt",
    "bucket_by",
    "holdout",
)

# Segments are documents in the same store as flags, under the key "segment:NAME" (a new
# flag name cannot hold ':', so no flag created by flagstaff collides with a segment).
SEGMENT_PREFIX = "segment:"


def is_segment_key(key: str) -> bool:
    """Whether a store key names a segment (``segment:NAME``) rather than a flag.

    A segment's part (:func:`is_part_key`) has the prefix too, so everything that leaves
    segments out of a list of flags leaves parts out; a list of segments must also leave
    out :func:`is_part_key`."""
    return key.startswith(SEGMENT_PREFIX)


# A large segment keeps its ``users`` in part documents (flagstaff.parts) under
# "segment:NAME:part:DIGEST". ':' is in no segment NAME (the name rule allows
# A-Z a-z 0-9 . _ -), so no segment a user creates collides with a part, and every store
# already holds keys with ':' (every segment key has one).
PART_MARK = ":part:"


def is_part_key(key: str) -> bool:
    """Whether a store key names a part of a segment stored in parts
    (``segment:NAME:part:DIGEST``, :mod:`flagstaff.parts`), not a flag or a segment."""
    return key.startswith(SEGMENT_PREFIX) and PART_MARK in key


def part_key(name: str, digest: str) -> str:
    """The store key of the part ``digest`` of the segment ``name``."""
    return f"{segment_key(name)}{PART_MARK}{digest}"


def part_owner(key: str) -> str:
    """The segment NAME a part key belongs to (``segment:NAME:part:DIGEST`` -> ``NAME``)."""
    return segment_name(key).partition(PART_MARK)[0]


def segment_key(name: str) -> str:
    """The store key of the segment ``name``."""
    return name if name.startswith(SEGMENT_PREFIX) else SEGMENT_PREFIX + name


def segment_name(key: str) -> str:
    """The segment's name from its store key (the key itself when it has no prefix)."""
    return key[len(SEGMENT_PREFIX) :] if key.startswith(SEGMENT_PREFIX) else key


MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""The largest document accepted, as UTF-8 canonical JSON: 4 MiB
(:func:`~flagstaff.model.parse_flag` refuses a larger one)."""


# --------------------------------------------------------------------------- wire I/O


def decode_document(raw: str | bytes) -> Any:
    """Decode a document as stored: JSON, or a bare ``on``/``off`` as written by
    hand into ZooKeeper or reddit's live config. Raises ``ValidationError``.

    Text that was not UTF-8 in the store reaches here with its bad bytes kept as
    lone surrogates (:func:`flagstaff.stores.base.decode_raw`); such a document
    is refused, naming the first bad byte, instead of being read with the byte
    replaced (silent damage) or failing whoever follows the store."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "surrogateescape")
    if not raw.isascii():  # ASCII (most documents) cannot hold a lone surrogate
        try:
            raw.encode("utf-8")  # C speed; a regex search costs as much as the JSON parse
        except UnicodeEncodeError as exc:
            where = f"{_describe_bad(raw[exc.start])} at offset {exc.start}"
            raise ValidationError([Problem("", f"not UTF-8 text: {where}")]) from None
    text = raw
    stripped = text.strip()
    if stripped in ("on", "off"):
        return stripped
    if not stripped:
        raise ValidationError([Problem("", "empty document")])
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ValidationError([Problem("", f"not JSON: {exc.msg} at {where}")]) from None
    except RecursionError:
        raise ValidationError([Problem("", "not JSON: nested too deeply")]) from None


def _describe_bad(char: str) -> str:
    # Lone surrogates: what surrogateescape makes of bytes that are not UTF-8 (U+DC80-U+DCFF),
    # or what a caller built by hand. Neither can be stored or sent as UTF-8.
    code = ord(char)
    return f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"


# Characters shown escaped by printable_text: C0/C1 controls, bidi and zero-width formatting,
# separators that end lines, and lone surrogates (undecodable bytes).
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def printable_text(text: str, *, newlines: bool = True) -> str:
    """``text`` safe to print in a terminal, a log line or a page: control and
    invisible formatting characters become ``\\xNN``/``\\uNNNN`` escapes and bytes
    that were not UTF-8 become ``\\xNN``; the result always encodes as UTF-8.
    Tabs and newlines are kept unless ``newlines`` is false."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        if 0xDC80 <= code <= 0xDCFF:
            return f"\\x{code - 0xDC00:02x}"
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    out = _UNPRINTABLE.sub(escape, text)
    if not newlines:
        out = out.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return out


def encode_document(value: Any) -> str:
    """Canonical JSON text of a document (sorted keys, compact)."""
    return _CANONICAL.encode(value)


# json.dumps with any non-default option builds a new encoder per call (half its cost
# for a small document; every flag and segment parsed is encoded once). An encoder
# holds no state between calls, so one is shared.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a flag document, as shipped in
    ``flagstaff/schema/flag.schema.json`` (a fresh copy each call).

    It is for editors and other tools; :func:`~flagstaff.model.parse_flag` is authoritative and
    also checks what a schema cannot (RE2 syntax, experiment weights against
    ``100/n``, schedule order). A test keeps its keys equal to this module's.
    """
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def segment_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a segment document (``segment:NAME``), as
    shipped in ``flagstaff/schema/segment.schema.json`` (a fresh copy each call).
    :func:`~flagstaff.segments.parse_segment` is authoritative."""
    schema: dict[str, Any] = json.loads(_schema_text("segment"))
    return schema


@functools.cache
def _schema_text(which: str = "flag") -> str:
    return (resources.files("flagstaff") / "schema" / f"{which}.schema.json").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- names


def validate_name(name: Any) -> list[Problem]:
    """Problems with a flag name (empty list when it is fine)."""
    if not isinstance(name, str) or not _NAME.match(name):
        return [
            Problem(
                "name",
                f"{name!r} is not a valid flag name: use 1-200 characters, no whitespace, no '/', "
                "not starting with '.'",
            )
        ]
    return []


def name_key(name: str) -> str:
    """The look-alike key of a flag name: two names with the same key look the same to a reader.

    Compatibility-normalised (NFKC) and case-folded, invisible format and control
    characters dropped (zero-width, bidi), the separators ``-``, ``_`` and ``.`` taken
    as one, ``0`` as ``o``, and ``1``, ``l`` and ``i`` (the case fold of ``I``) as one.
    """
    text = unicodedata.normalize("NFKC", name).casefold()
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc", "Cs"))
    return text.translate(_LOOKALIKE)


def _describe(ch: str) -> str:
    shown = f" {ch!r}" if ch.isprintable() and not ch.isspace() else ""
    return f"U+{ord(ch):04X}{shown} ({unicodedata.name(ch, 'unnamed character')})"


def check_new_name(name: Any, existing: Iterable[str] = ()) -> None:
    """Raise :class:`ValidationError` unless ``name`` may be given to a NEW flag.

    The alphabet is ASCII letters, digits, ``.``, ``_`` and ``-``, 1-200 characters,
    starting with a letter or digit; the message names the first bad character by
    code point. ``existing`` are the names already in the store: a name that looks
    the same as one of them (same :func:`name_key`, see docs/flags.md) is refused too.
    Names that are already stored are not checked again: they stay readable.
    """
    if not isinstance(name, str):
        raise ValidationError([Problem("name", "a flag name must be a string")])
    # repr escapes invisible, bidi and surrogate characters, so the message shows them.
    shown = repr(name if len(name) <= 60 else name[:57] + "...")
    rule = f"use {NEW_NAME_CHARS} (1-200 characters, starting with a letter or digit)"
    if not _NEW_NAME.fullmatch(name):
        if not name:
            why = "it is empty"
        elif len(name) > 200:
            why = f"it is {len(name)} characters long"
        else:
            at, bad = next(((i, c) for i, c in enumerate(name) if not _NEW_NAME_CHAR.match(c)), (0, name[0]))
            why = f"character {at + 1} is {_describe(bad)}"
        problem = Problem("name", f"{shown} is not a valid flag name: {why}; {rule}")
        raise ValidationError([problem], flag=name)
    key = name_key(name)
    clash = sorted(other for other in existing if other != name and name_key(other) == key)
    if clash:
        raise ValidationError(
            [
                Problem(
                    "name",
                    f"{shown} looks the same as the existing flag {clash[0]!r}: "
                    "names that differ only in case, '-'/'_'/'.', 0/o or 1/l/i cannot both exist",
                )
            ],
            flag=name,
        )
