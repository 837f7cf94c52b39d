"""Segments: named sets of contexts, stored as their own documents and used by flags.

A segment lives in the same store as the flags, under the key ``segment:NAME``
(:func:`flagstaff.document.segment_key`), so every store, watch, history,
compare-and-set and the on-disk copy carry it unchanged. Flags refer to it by
name (a targeting rule's ``segments``, a ``deny`` list's ``segments``); the
snapshot links each flag to the segments of its own revision
(:mod:`flagstaff.snapshot`), so a segment edited once reaches every flag that
uses it in one snapshot swap, and its members are held once.

A segment document::

    {"description": "Internal staff",
     "users": ["alice", "42"],                 # user ids, or names (case-insensitive)
     "groups": ["employee"],                   # any of these groups
     "rules": [{"attribute": "email", "op": "ends_with", "value": "@example.com"}],
     "exclude_users": ["contractor-7"],        # never members, whatever else matches
     "percentage": 5, "salt": "holdout-2027",  # a stable slice of ids (bucket_by as flags)
     "holdout": true}                          # members see no experiment

A context is a member when it is not excluded and any of ``users``, ``groups``,
``rules`` or ``percentage`` takes it. ``holdout: true`` makes the segment a
global holdout: its members get :attr:`~flagstaff.decision.Reason.HOLDOUT` from
every experiment.

Large segments are stored in parts (:mod:`flagstaff.parts`, which describes the
design): a segment whose document would exceed 512 KiB keeps its ``users`` in part
documents ``segment:NAME:part:DIGEST`` and its head lists their digests under
``user_parts``. :func:`parse_segment` compiles such a head with its parts (given as
``parts``) into one segment with one compact member set; a missing or invalid part is
a :class:`~flagstaff.errors.ValidationError` naming it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flagstaff import checks
from flagstaff.bucketing import BucketBy, BucketingMode, native_percentage_check, percentage_test
from flagstaff.context import Context
from flagstaff.document import (
    MAX_DOCUMENT_BYTES,
    NEW_NAME_CHARS,
    SEGMENT_KEYS,
    decode_document,
    encode_document,
    segment_key,
    segment_name,
)
from flagstaff.errors import Problem, ValidationError
from flagstaff.members import COMPACT_ABOVE, users_test
from flagstaff.parts import MAX_SEGMENT_BYTES, PARTS_KEY, Lookup, join
from flagstaff.rules import Condition, parse_rules, show, suggest

__all__ = ["Segment", "parse_segment", "parse_segment_text"]


@dataclass(frozen=True, slots=True)
class Segment:
    """A validated segment. Build it with :func:`parse_segment`, never by hand."""

    name: str  # without the "segment:" prefix
    document: str = field(repr=False)  # canonical JSON text of what was given
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] = ()
    holdout: bool = False
    contains: Callable[[Context], bool] = field(default=lambda ctx: False, repr=False, compare=False)
    """Whether a context is a member: compiled once, never raises for a valid segment."""

    @property
    def value(self) -> Any:
        """The document as a JSON value (a fresh copy)."""
        return json.loads(self.document)


# A segment NAME follows the rule for new flag names (docs/flags.md, "Flag names").
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def parse_segment(
    name: str, value: Any, *, parts: Lookup | Mapping[str, str] | None = None, limit: int = MAX_DOCUMENT_BYTES
) -> Segment:
    """Validate ``value`` (a decoded JSON document) and compile it into a :class:`Segment`.

    ``name`` is the segment's name or its store key. A head of a segment stored in parts
    (``user_parts``, :mod:`flagstaff.parts`) takes its users from ``parts`` (part key ->
    stored text); a part missing there, or invalid, is a problem naming the part.
    ``limit`` is the largest document accepted, in bytes (the writer validates a whole
    segment before storing it in parts, up to :data:`flagstaff.parts.MAX_SEGMENT_BYTES`).
    Raises :class:`~flagstaff.errors.ValidationError` naming every field at fault.
    """
    key = segment_key(str(name))
    bare = segment_name(str(name))
    if not isinstance(name, str) or not _NAME.fullmatch(bare):
        problem = Problem(
            "name",
            f"{bare!r} is not a valid segment name: use {NEW_NAME_CHARS} "
            "(1-200 characters, starting with a letter or digit)",
        )
        raise ValidationError([problem], flag=key)
    try:
        text = encode_document(value)
        size = len(text.encode())
    except (TypeError, ValueError) as exc:
        raise ValidationError([Problem("", f"not representable as JSON: {exc}")], flag=key) from None
    if size > limit:
        problem = Problem(
            "", f"the segment is larger than the {limit // (1024 * 1024)} MiB a segment may hold"
        )
        if limit < MAX_SEGMENT_BYTES:
            problem = Problem(
                "",
                f"document is larger than {limit // (1024 * 1024)} MiB "
                f"(write it through flagstaff: a segment's users are stored in parts, up to "
                f"{MAX_SEGMENT_BYTES // (1024 * 1024)} MiB)",
            )
        raise ValidationError([problem], flag=key)
    if not isinstance(value, dict):
        problem = Problem(
            "",
            'a segment must be an object such as {"users": ["alice"], "groups": ["employee"]}, '
            f"not {show(value)}",
        )
        raise ValidationError([problem], flag=key)
    problems: list[Problem] = []
    segment = _build(bare, text, value, problems, parts)
    if problems or segment is None:
        raise ValidationError(problems or [Problem("", "invalid segment")], flag=key)
    return segment


def parse_segment_text(
    name: str, raw: str | bytes, *, parts: Lookup | Mapping[str, str] | None = None
) -> Segment:
    """The one step from a stored record to a :class:`Segment` (as
    :func:`flagstaff.model.parse_text` for a flag); ``parts`` as for :func:`parse_segment`."""
    try:
        return parse_segment(name, decode_document(raw), parts=parts)
    except ValidationError:
        raise
    except Exception as exc:
        problem = Problem("", f"cannot read the document: {type(exc).__name__}: {exc}")
        raise ValidationError([problem], flag=segment_key(str(name))) from exc


def _names(value: Any, path: str, problems: list[Problem]) -> list[str] | None:
    if isinstance(value, list):
        kinds = set(map(type, value))  # C speed: a segment may list 10,000 users
        if kinds <= _STR:
            return value
        if all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
            return [str(v) for v in value]
    problems.append(Problem(path, "must be a list of strings"))
    return None


_STR = frozenset({str})


def _users(items: list[str]) -> Callable[[Context], bool]:
    if len(items) > COMPACT_ABOVE:  # a compact set: ~20 MB for a million ids, not ~100 MB
        return users_test(items)
    # Dicts of str -> None, not frozensets: as fast to look up, 40% of the memory, and
    # untracked by the garbage collector (a set of 10,000 members is traversed entry by
    # entry at every full collection; a dict of only strings and None is skipped).
    exact = dict.fromkeys(items)
    lower = dict.fromkeys(map(str.lower, exact))
    if lower == exact:  # ids already lower case (the common case): one table held, not two
        lower = exact

    def users(ctx: Context) -> bool:
        if ctx.user_id in exact:
            return True
        name = ctx.user_name
        return name is not None and name.lower() in lower

    return users


def _build(
    name: str,
    text: str,
    doc: dict[str, Any],
    problems: list[Problem],
    parts: Lookup | Mapping[str, str] | None,
) -> Segment | None:
    for key in doc:
        if key not in SEGMENT_KEYS:
            problems.append(Problem(str(key), f"unknown key{suggest(str(key), SEGMENT_KEYS)}"))
    meta: dict[str, str] = {}
    for key in ("description", "owner"):
        if key in doc:
            if isinstance(doc[key], str):
                meta[key] = doc[key]
            else:
                problems.append(Problem(key, "must be a string"))
    tags: tuple[str, ...] = ()
    if "tags" in doc:
        if isinstance(doc["tags"], list) and all(isinstance(t, str) for t in doc["tags"]):
            tags = tuple(doc["tags"])
        else:
            problems.append(Problem("tags", "must be a list of strings"))
    holdout = doc.get("holdout", False)
    if not isinstance(holdout, bool):
        problems.append(Problem("holdout", "must be true (members see no experiment) or false"))
    salt = "segment:" + name
    if "salt" in doc:
        if isinstance(doc["salt"], str) and doc["salt"]:
            salt = doc["salt"]
        else:
            problems.append(Problem("salt", "must be a non-empty string"))
    by, source = BucketBy.USER, None
    if "bucket_by" in doc:
        by, source = checks.bucket_source(doc["bucket_by"], "bucket_by", problems)
    takes: list[Callable[[Context], bool]] = []
    if "users" in doc:
        users = _names(doc["users"], "users", problems)
        if users:
            takes.append(_users(users))
    if PARTS_KEY in doc:
        if "users" in doc:
            problems.append(
                Problem(PARTS_KEY, "a segment has users or user_parts (its users stored in parts), not both")
            )
        joined, missing = join(name, doc[PARTS_KEY], parts if parts is not None else {})
        problems += missing
        if joined:
            takes.append(_users(joined))
    if "groups" in doc:
        groups = _names(doc["groups"], "groups", problems)
        if groups:
            wanted = frozenset(groups)
            takes.append(lambda ctx: not wanted.isdisjoint(ctx.groups))
    if "rules" in doc:
        compiled = parse_rules(doc["rules"], "rules", problems)
        if compiled:
            takes.append(_any_rule(tuple(compiled)))
    if "percentage" in doc:
        p = doc["percentage"]
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p) or not 0 <= p <= 100:
            problems.append(Problem("percentage", f"must be a number between 0 and 100, not {show(p)}"))
        elif p > 0:
            takes.append(_percentage(salt, float(p), by, source))
    excluded: Callable[[Context], bool] | None = None
    if "exclude_users" in doc:
        out = _names(doc["exclude_users"], "exclude_users", problems)
        if out:
            excluded = _users(out)
    if problems:
        return None
    return Segment(
        name=name,
        document=text,
        description=meta.get("description"),
        owner=meta.get("owner"),
        tags=tags,
        holdout=holdout is True,
        contains=_contains(tuple(takes), excluded),
    )


def _any_rule(rules: tuple[tuple[Condition, ...], ...]) -> Callable[[Context], bool]:
    def rules_hold(ctx: Context) -> bool:
        return any(all(c(ctx) for c in conditions) for conditions in rules)

    return rules_hold


def _percentage(
    salt: str, pct: float, by: BucketBy, source: checks.KeySource | None
) -> Callable[[Context], bool]:
    """The flag-level ``percentage`` test, native mode, over the segment's salt."""
    if source is not None:
        test = percentage_test(BucketingMode.FLAGSTAFF, salt, pct)

        def by_attribute(ctx: Context) -> bool:
            key = source(ctx)
            return key is not None and test(*key)

        return by_attribute
    if pct >= 100:
        return lambda ctx: True
    return native_percentage_check(salt, pct, by, True, False)


def _contains(
    takes: tuple[Callable[[Context], bool], ...], excluded: Callable[[Context], bool] | None
) -> Callable[[Context], bool]:
    if not takes:
        return lambda ctx: False  # an empty segment has no member
    if len(takes) == 1 and excluded is None:
        return takes[0]

    def contains(ctx: Context) -> bool:
        if excluded is not None and excluded(ctx):
            return False
        return any(take(ctx) for take in takes)

    return contains
