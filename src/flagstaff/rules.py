"""Attribute rules: ``{"attribute": "plan", "op": "in", "value": ["pro"]}``.

A clause compares one context attribute with a value. Operators:

===============================  =============================================
``eq``                           equal (strings compare exactly)
``in``                           equal to one of a list
``contains``                     the attribute (string or list) contains value
``starts_with`` / ``ends_with``  string prefix / suffix
``regex``                        RE2 search (linear time, never stalls)
``lt`` ``lte`` ``gt`` ``gte``    numeric comparison
``semver_eq`` ``semver_lt``      semantic-version comparison (2.0.0 rules,
``semver_lte`` ``semver_gt``     pre-releases order before their release)
``semver_gte``
``before`` ``after``             date comparison (ISO 8601 with offset, or
                                 seconds since the epoch)
``exists``                       the attribute is present (value ignored)
===============================  =============================================

``"negate": true`` inverts a clause. When the attribute is a list (``groups``),
the clause holds if it holds for any element (``contains`` looks at the list
itself). A missing attribute never satisfies a clause (so a negated clause on a
missing attribute holds).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from operator import attrgetter
from typing import Any

import re2

from flagstaff.context import FIELDS as CONTEXT_FIELDS
from flagstaff.document import CLAUSE_KEYS
from flagstaff.errors import Problem

__all__ = [
    "OPERATORS",
    "Condition",
    "Test",
    "attribute_getter",
    "compile_clause",
    "compile_regex",
    "parse_clause",
    "parse_instant",
    "parse_rules",
    "parse_semver",
    "show",
    "suggest",
]

Test = Callable[[Any], bool]
"""A compiled comparison of one attribute value."""

_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)

SemverKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


def parse_semver(text: str) -> SemverKey | None:
    """A sort key for a semantic version, or ``None`` if ``text`` is not one.

    Pre-release versions sort before the release; numeric identifiers sort
    numerically and before alphanumeric ones; build metadata is ignored.
    """
    m = _SEMVER.match(text.strip())
    if m is None:
        return None
    major, minor, patch, pre = int(m[1]), int(m[2]), int(m[3]), m[4]
    if pre is None:
        return (major, minor, patch, 1, ())
    parts: list[tuple[int, int | str]] = []
    for ident in pre.split("."):
        parts.append((0, int(ident)) if ident.isdigit() else (1, ident))
    return (major, minor, patch, 0, tuple(parts))


def parse_instant(value: Any) -> float | None:
    """Seconds since the epoch for an ISO 8601 string (with offset), a number, or
    a timezone-aware ``datetime``; ``None`` if it is none of those."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, _dt.datetime):
        return value.timestamp() if value.tzinfo is not None else None
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed.timestamp() if parsed.tzinfo is not None else None
    return None


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # bad patterns are reported as problems, not logged to stderr


def compile_regex(pattern: Any, path: str, problems: list[Problem]) -> Any:
    """Compile ``pattern`` with RE2, recording a problem if it is not valid RE2."""
    if not isinstance(pattern, str):
        problems.append(Problem(path, "must be a string holding a regular expression"))
        return None
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except Exception as exc:  # re2 raises its own error type; report it as a problem
        detail = str(exc).strip("b'\"")
        problems.append(
            Problem(path, f"not a valid RE2 expression ({detail}); RE2 has no backreferences or lookaround")
        )
        return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _scalar_tests(op: str, value: Any, path: str, problems: list[Problem]) -> Test | None:
    """The test one element of the attribute must pass, for every op but
    ``contains`` and ``exists``."""
    if op == "eq":
        if not isinstance(value, _SCALARS):
            problems.append(Problem(path, "op 'eq' needs a string, number or boolean value"))
            return None
        return lambda a: a == value
    if op == "in":
        if not isinstance(value, list):
            problems.append(Problem(path, "op 'in' needs a list value"))
            return None
        if not all(isinstance(v, _SCALARS) for v in value):
            problems.append(Problem(path, "op 'in' needs a list of strings or numbers"))
            return None
        allowed = frozenset(value)
        return lambda a: isinstance(a, _SCALARS) and a in allowed
    if op in ("starts_with", "ends_with"):
        if not isinstance(value, str):
            problems.append(Problem(path, f"op {op!r} needs a string value"))
            return None
        if op == "starts_with":
            return lambda a: isinstance(a, str) and a.startswith(value)
        return lambda a: isinstance(a, str) and a.endswith(value)
    if op == "regex":
        rx = compile_regex(value, path, problems)
        if rx is None:
            return None
        search = rx.search
        return lambda a: isinstance(a, str) and search(a) is not None
    if op in ("lt", "lte", "gt", "gte"):
        bound = _num(value)
        if bound is None or not math.isfinite(bound):
            problems.append(Problem(path, f"op {op!r} needs a number"))
            return None
        cmp = _COMPARE[op]
        return lambda a: (x := _num(a)) is not None and cmp(x, bound)
    if op.startswith("semver_"):
        key = parse_semver(value) if isinstance(value, str) else None
        if key is None:
            problems.append(Problem(path, f"op {op!r} needs a semantic version such as '1.4.0'"))
            return None
        cmp = _COMPARE[op.removeprefix("semver_")]
        return lambda a: isinstance(a, str) and (k := parse_semver(a)) is not None and cmp(k, key)
    if op in ("before", "after"):
        when = parse_instant(value)
        if when is None:
            problems.append(
                Problem(path, f"op {op!r} needs an ISO 8601 time with a UTC offset, or epoch seconds")
            )
            return None
        if op == "before":
            return lambda a: (t := parse_instant(a)) is not None and t < when
        return lambda a: (t := parse_instant(a)) is not None and t > when
    problems.append(Problem(path, f"unknown op {op!r}; expected one of {', '.join(OPERATORS)}"))
    return None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
}

OPERATORS: Sequence[str] = (
    "eq",
    "in",
    "contains",
    "starts_with",
    "ends_with",
    "regex",
    "lt",
    "lte",
    "gt",
    "gte",
    "semver_eq",
    "semver_lt",
    "semver_lte",
    "semver_gt",
    "semver_gte",
    "before",
    "after",
    "exists",
)

_SEQUENCES = (list, tuple, set, frozenset)
_SCALARS = (str, int, float)

Condition = Callable[[Any], bool]
"""A compiled clause: takes a :class:`~flagstaff.context.Context`, says whether it holds."""


def attribute_getter(name: str) -> Callable[[Any], Any]:
    """``ctx -> value`` of a built-in context field, else of a free-form attribute."""
    if name in CONTEXT_FIELDS:
        return attrgetter(name)

    def custom(ctx: Any) -> Any:
        return ctx.attributes.get(name)

    return custom


def compile_clause(
    attribute: str, op: str, value: Any, negate: bool, path: str, problems: list[Problem]
) -> Condition | None:
    """Compile one clause into a test of a context, or record a problem and return ``None``.

    A missing attribute never satisfies a clause, so its negation holds. A list
    attribute satisfies a clause when any element does (``contains`` and
    ``exists`` look at the attribute as a whole).
    """
    get = attribute_getter(attribute)
    if op == "exists":

        def exists(ctx: Any) -> bool:
            return (get(ctx) is not None) is not negate

        return exists
    whole: Test
    if op == "contains":
        if not isinstance(value, _SCALARS) or isinstance(value, bool):
            problems.append(Problem(path, "op 'contains' needs a string or number value"))
            return None
        whole = partial(_contains, value=value)

        def contains(ctx: Any) -> bool:
            a = get(ctx)
            return negate if a is None else whole(a) is not negate

        return contains
    one = _scalar_tests(op, value, path, problems)
    if one is None:
        return None
    if op in ("eq", "in"):
        # The common clause on a string attribute, without a call per test: for a str,
        # ``one(a)`` is exactly ``a in allowed`` (a set of the wanted scalars).
        allowed = frozenset(value if op == "in" else [value])

        def member_clause(ctx: Any) -> bool:
            a = get(ctx)
            if a.__class__ is str:
                return (a in allowed) is not negate
            if a is None:
                return negate
            if isinstance(a, _SEQUENCES):
                return any(one(x) for x in a) is not negate
            return one(a) is not negate

        return member_clause

    def clause(ctx: Any) -> bool:
        a = get(ctx)
        if a is None:
            return negate
        if isinstance(a, _SEQUENCES):
            return any(one(x) for x in a) is not negate
        return one(a) is not negate

    return clause


def _contains(attr: Any, value: Any) -> bool:
    if isinstance(attr, str):
        return isinstance(value, str) and value in attr
    if isinstance(attr, _SEQUENCES):
        return value in attr
    return False


# --------------------------------------------------------------------------- parsing
# Shared by flags (rules, deny.rules, a targeting rule's "when") and segments (rules), so a
# clause reads and fails the same way wherever it is written.


def suggest(key: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the known name closest to ``key``, else ``""``."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def show(value: Any) -> str:
    """A value as JSON for a message, cut at 40 characters."""
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_clause(clause: Any, path: str, problems: list[Problem]) -> Condition | None:
    """Validate and compile one clause (``{"attribute", "op", "value", "negate"}``)."""
    if not isinstance(clause, dict):
        problems.append(
            Problem(path, 'must be an object such as {"attribute": "plan", "op": "eq", "value": "pro"}')
        )
        return None
    for key in clause:
        if key not in CLAUSE_KEYS:
            problems.append(Problem(f"{path}.{key}", f"unknown key{suggest(str(key), CLAUSE_KEYS)}"))
    attr, op = clause.get("attribute"), clause.get("op")
    if not isinstance(attr, str) or not attr:
        problems.append(Problem(f"{path}.attribute", "must name a context attribute"))
        return None
    if not isinstance(op, str) or op not in OPERATORS:
        problems.append(
            Problem(f"{path}.op", f"unknown operator {show(op)}; expected one of {', '.join(OPERATORS)}")
        )
        return None
    if op != "exists" and "value" not in clause:
        problems.append(Problem(f"{path}.value", f"op {op!r} needs a value"))
        return None
    negate = clause.get("negate", False)
    if not isinstance(negate, bool):
        problems.append(Problem(f"{path}.negate", "must be true or false"))
        return None
    return compile_clause(attr, op, clause.get("value"), negate, f"{path}.value", problems)


def parse_rules(value: Any, path: str, problems: list[Problem]) -> list[tuple[Condition, ...]] | None:
    """Validate and compile a ``rules`` list: each item a clause, or ``{"all": [clauses]}``;
    the conditions of each rule, in order (a rule holds when all of its conditions do)."""
    if not isinstance(value, list) or not value:
        problems.append(Problem(path, "must be a non-empty list of rules"))
        return None
    compiled: list[tuple[Condition, ...]] = []
    for i, rule in enumerate(value):
        rpath = f"{path}[{i}]"
        if isinstance(rule, dict) and "all" in rule:
            if set(rule) != {"all"}:
                problems.append(Problem(rpath, "a rule with 'all' may have no other keys"))
            clauses = rule["all"]
            if not isinstance(clauses, list) or not clauses:
                problems.append(Problem(rpath + ".all", "must be a non-empty list of clauses"))
                continue
            paths = [f"{rpath}.all[{j}]" for j in range(len(clauses))]
        else:
            clauses, paths = [rule], [rpath]
        parts = [parse_clause(c, p, problems) for c, p in zip(clauses, paths, strict=True)]
        compiled.append(tuple(c for c in parts if c is not None))
    return compiled
