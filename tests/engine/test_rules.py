"""Attribute rules: every operator, negation, list attributes, and linear-time regexes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstaff import Context, Reason, ValidationError, evaluate, parse_flag
from flagstaff.errors import Problem
from flagstaff.rules import OPERATORS, compile_clause, parse_instant, parse_semver


def _holds(op: str, value: Any, attr: Any, negate: bool = False) -> bool:
    clause: dict[str, Any] = {"attribute": "a", "op": op, "negate": negate}
    if op != "exists":
        clause["value"] = value
    flag = parse_flag("f", {"rules": [clause]})
    decision = evaluate(flag, Context(user_id="u", attributes={} if attr is None else {"a": attr}))
    assert decision.reason in (Reason.TARGET, Reason.DEFAULT), decision
    return decision.enabled


@pytest.mark.parametrize(
    ("op", "value", "attr", "expected"),
    [
        ("eq", "pro", "pro", True),
        ("eq", "pro", "Pro", False),
        ("eq", 3, 3.0, True),
        ("in", ["pro", "team"], "team", True),
        ("in", ["pro", "team"], "free", False),
        ("in", [1, 2], 2, True),
        ("contains", "corp", "ann@corp.example", True),
        ("contains", "x", ["x", "y"], True),
        ("contains", "z", ["x", "y"], False),
        ("starts_with", "en-", "en-GB", True),
        ("ends_with", ".gov", "a.gov", True),
        ("ends_with", ".gov", "a.gov.uk", False),
        ("regex", "^[0-9]+01$", "444401", True),
        ("regex", "^[0-9]+01$", "44488", False),
        ("lt", 10, 9.5, True),
        ("lte", 10, "10", True),
        ("gt", 10, 10, False),
        ("gte", 10, 11, True),
        ("gt", 10, "ten", False),
        ("semver_eq", "1.2.3", "v1.2.3+build.5", True),
        ("semver_lt", "1.10.0", "1.9.12", True),
        ("semver_lte", "2.0.0", "2.0.0-rc.1", True),
        ("semver_gt", "2.0.0-rc.1", "2.0.0-rc.2", True),
        ("semver_gt", "2.0.0-rc.11", "2.0.0-rc.2", False),
        ("semver_gte", "2.0.0", "2.0.0", True),
        ("semver_gt", "1.0.0", "banana", False),
        ("before", "2027-01-01T00:00:00Z", "2026-12-31T23:59:59+00:00", True),
        ("before", "2027-01-01T00:00:00Z", 1798761600, False),
        ("after", 1798761600, "2027-01-01T01:00:00+01:00", False),
        ("after", 1798761600, "2027-01-01T00:00:01Z", True),
        ("exists", None, "anything", True),
        ("exists", None, None, False),
        ("in", ["beta"], ["alpha", "beta"], True),  # a list attribute: any element
    ],
)
def test_operator(op: str, value: Any, attr: Any, expected: bool) -> None:
    assert _holds(op, value, attr) is expected
    # Negation inverts, and a missing attribute satisfies only the negated clause.
    assert _holds(op, value, attr, negate=True) is (not expected)


@pytest.mark.parametrize("op", [o for o in OPERATORS if o != "exists"])
def test_missing_attribute_never_satisfies(op: str) -> None:
    value: Any = {
        "in": ["x"],
        "lt": 1,
        "lte": 1,
        "gt": 1,
        "gte": 1,
        "before": 0,
        "after": 0,
    }.get(op, "1.0.0" if op.startswith("semver") else "x")
    assert _holds(op, value, None) is False
    assert _holds(op, value, None, negate=True) is True


def test_builtin_fields_are_attributes() -> None:
    flag = parse_flag("f", {"rules": [{"attribute": "location", "op": "in", "value": ["aww"]}]})
    assert evaluate(flag, Context(location="aww")).enabled
    flag = parse_flag("f", {"rules": [{"attribute": "user_id", "op": "regex", "value": "01$"}]})
    assert evaluate(flag, Context(user_id="444401")).enabled


def test_all_clauses_must_hold_and_rules_or_together() -> None:
    doc = {
        "rules": [
            {
                "all": [
                    {"attribute": "plan", "op": "eq", "value": "pro"},
                    {"attribute": "n", "op": "gt", "value": 5},
                ]
            },
            {"attribute": "vip", "op": "eq", "value": True},
        ]
    }
    flag = parse_flag("f", doc)
    assert evaluate(flag, Context(attributes={"plan": "pro", "n": 6})).rule == "rules[0]"
    assert not evaluate(flag, Context(attributes={"plan": "pro", "n": 5})).enabled
    assert evaluate(flag, Context(attributes={"vip": True})).rule == "rules[1]"


def test_semver_and_instant_parsers() -> None:
    assert parse_semver("1.0.0-alpha") < parse_semver("1.0.0-alpha.1") < parse_semver("1.0.0")  # type: ignore[operator]
    assert parse_semver("01.0.0") is None
    assert parse_instant("2027-01-01T00:00:00") is None  # no offset: ambiguous, refused
    assert parse_instant("2027-01-01T00:00:00Z") == 1798761600.0
    assert parse_instant(True) is None


# --------------------------------------------------------------------------- hostile input

CATASTROPHIC = ["(a+)+$", "(a|aa)+$", "(a*)*b", "^(([a-z])+.)+[A-Z]([a-z])+$"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
@pytest.mark.timeout(10)
def test_catastrophic_regex_finishes(pattern: str) -> None:
    # With a backtracking engine these take longer than the age of the universe.
    for where in ("regex", "rules"):
        doc: Any = (
            {"regex": pattern}
            if where == "regex"
            else {"rules": [{"attribute": "user_id", "op": "regex", "value": pattern}]}
        )
        flag = parse_flag("f", doc)
        for text in ("a" * 5000 + "!", "a" * 65536 + "!"):
            started = time.perf_counter()
            decision = evaluate(flag, Context(user_id=text))
            elapsed = time.perf_counter() - started
            assert decision.reason is Reason.DEFAULT  # no match, and no error
            assert elapsed < 1.0  # generous: the benchmark measures the real figure (~0.1 ms)


def test_regex_matches_64k_input() -> None:
    flag = parse_flag("f", {"regex": "(a+)+$"})
    assert evaluate(flag, Context(user_id="b" + "a" * 65536)).enabled


@pytest.mark.parametrize("pattern", [r"(a)\1", r"foo(?=bar)", r"(?<=x)y", "(unclosed"])
def test_non_re2_patterns_are_refused_with_a_reason(pattern: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_flag("f", {"regex": pattern})
    (problem,) = info.value.problems
    assert problem.path == "regex"
    assert "not a valid RE2 expression" in problem.message


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["eq", "in"]),
    st.booleans(),
    st.one_of(
        st.none(),
        st.sampled_from(["pro", "team", "", "1"]),
        st.integers(0, 2),
        st.lists(st.sampled_from(["pro", "x", 1]), max_size=3),
    ),
)
def test_eq_and_in_on_any_attribute_value_match_their_definition(op: str, negate: bool, attr: Any) -> None:
    # eq/in have a fast path for a string attribute; every kind of value must answer as defined.
    value: Any = ["pro", 1] if op == "in" else "pro"
    problems: list[Problem] = []
    clause = compile_clause("plan", op, value, negate, "v", problems)
    assert clause is not None and not problems
    wanted = value if op == "in" else [value]

    def one(a: Any) -> bool:
        return isinstance(a, str | int | float) and a in wanted

    if attr is None:
        expect = negate
    elif isinstance(attr, list):
        expect = any(one(a) for a in attr) is not negate
    else:
        expect = one(attr) is not negate
    assert clause(Context(attributes={"plan": attr})) is expect
