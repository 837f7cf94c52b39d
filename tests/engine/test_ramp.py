"""``ramp``: a progressive rollout evaluated from the document and the clock (issue 15),
and ``guardrails`` parsed as metadata."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import flagstaff
from flagstaff import Context, Reason, ValidationError, evaluate, parse_flag
from flagstaff.document import GUARDRAIL_KEYS, RAMP_KEYS, RAMP_STEP_KEYS, json_schema
from flagstaff.model import Guardrail, Ramp
from flagstaff.stores.memory import MemoryStore
from tests._support.client import eventually, unique_memory_url

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
RAMP = {
    "ramp": {
        "steps": [
            {"at": T0, "percentage": 1},
            {"at": "2027-01-16T08:00:00Z", "percentage": 5},
            {"at": T0 + 2 * 86400, "percentage": 25},
            {"at": T0 + 3 * 86400, "percentage": 100},
        ]
    }
}
USERS = [Context(user_id=f"u{i}") for i in range(2000)]


def share(flag: flagstaff.Flag, now: float) -> int:
    return sum(evaluate(flag, ctx, now).enabled for ctx in USERS)


def problems(doc: Any) -> str:
    with pytest.raises(ValidationError) as info:
        parse_flag("f", doc)
    return str(info.value)


def test_ramp_parses_iso_and_epoch_steps() -> None:
    flag = parse_flag("f", RAMP)
    assert flag.ramp == Ramp(((T0, 1.0), (T0 + 86400, 5.0), (T0 + 2 * 86400, 25.0), (T0 + 3 * 86400, 100.0)))
    assert flag.ramp.percentage(T0 - 1) == 0
    assert flag.ramp.percentage(T0 + 86400) == 5
    assert flag.needs_clock


def test_before_between_and_after_the_steps() -> None:
    flag = parse_flag("f", RAMP)
    assert share(flag, T0 - 1) == 0
    assert evaluate(flag, USERS[0], T0 - 1).reason is Reason.DEFAULT
    one, five, quarter = share(flag, T0), share(flag, T0 + 86400 + 5), share(flag, T0 + 2 * 86400)
    assert 5 <= one <= 45  # ~1% of 2000
    assert 60 <= five <= 140
    assert 420 <= quarter <= 580
    assert share(flag, T0 + 3 * 86400) == len(USERS)
    hits = [evaluate(flag, c, T0 + 86400) for c in USERS]
    assert {(d.reason, d.rule) for d in hits if d.enabled} == {(Reason.PERCENTAGE, "ramp[1]")}


def test_a_step_is_the_flag_level_percentage_same_buckets() -> None:
    """At a step of p%, exactly the users of ``"percentage": p`` are in (same salt, bucket)."""
    ramp = parse_flag("f", RAMP)
    plain = parse_flag("f", {"percentage": 25})
    now = T0 + 2 * 86400 + 1
    assert [evaluate(ramp, c, now).enabled for c in USERS] == [evaluate(plain, c).enabled for c in USERS]


def test_context_time_is_used_and_no_time_is_an_error() -> None:
    flag = parse_flag("f", RAMP)
    ctx = Context(user_id="u1", time=T0 + 3 * 86400)
    assert evaluate(flag, ctx).enabled
    d = evaluate(flag, Context(user_id="u1"))
    assert d.reason is Reason.ERROR and d.error == "flag has a ramp but no time was given"
    # now overrides the context's time
    assert not evaluate(flag, ctx, T0 - 10).enabled


@settings(max_examples=60, deadline=None)
@given(
    pcts=st.lists(st.floats(min_value=0, max_value=100), min_size=2, max_size=6),
    user=st.text(min_size=1, max_size=12),
    salt=st.sampled_from([None, "s1", "other"]),
)
def test_in_at_a_step_means_in_at_every_later_step(pcts: list[float], user: str, salt: str | None) -> None:
    pcts = sorted(pcts)
    doc: dict[str, Any] = {
        "ramp": {"steps": [{"at": T0 + 100 * i, "percentage": p} for i, p in enumerate(pcts)]}
    }
    if salt is not None:
        doc["salt"] = salt
    flag = parse_flag("f", doc)
    ctx = Context(user_id=user)
    seen = [evaluate(flag, ctx, T0 + 100 * i + 50).enabled for i in range(len(pcts))]
    first = seen.index(True) if True in seen else len(seen)
    assert all(seen[first:])


def test_ramp_combines_with_targeting_default_and_the_switch() -> None:
    doc = {
        **RAMP,
        "targeting": [{"users": ["vip"], "serve": {"variant": "on"}}],
        "default": {"variant": "off"},
    }
    flag = parse_flag("f", doc)
    before = T0 - 1
    assert evaluate(flag, Context(user_id="vip"), before).reason is Reason.RULE
    assert evaluate(flag, Context(user_id="u1"), before).reason is Reason.DEFAULT
    assert evaluate(flag, Context(user_id="u1"), T0 + 3 * 86400).rule == "ramp[3]"
    # the selectors come first, the kill switch beats the ramp
    flag = parse_flag("f", {**RAMP, "users": ["alice"]})
    assert evaluate(flag, Context(user_id="alice"), before).enabled
    off = parse_flag("f", {**RAMP, "enabled": "off"})
    assert evaluate(off, Context(user_id="u1"), T0 + 3 * 86400).reason is Reason.OFF


def test_ramp_within_a_schedule() -> None:
    flag = parse_flag("f", {**RAMP, "schedule": {"end": T0 + 2 * 86400}})
    assert evaluate(flag, Context(user_id="u1"), T0 + 3 * 86400).reason is Reason.SCHEDULE
    assert flag.schedule is not None and flag.schedule.end == T0 + 2 * 86400


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"percentage": 5, **RAMP}, "ramp: a flag has either a 'percentage' or a 'ramp'"),
        ({"ramp": []}, "ramp: must be an object with 'steps'"),
        ({"ramp": {"steps": []}}, "ramp.steps: must be a non-empty list"),
        (
            {"ramp": {"stpes": [{"at": 1, "percentage": 1}]}},
            "ramp.stpes: unknown key; did you mean 'steps'?",
        ),
        (
            {"ramp": {"steps": [{"at": "tomorrow", "percentage": 1}]}},
            'ramp.steps[0].at: "tomorrow" is not a time',
        ),
        ({"ramp": {"steps": [{"at": 1, "percentage": 101}]}}, "ramp.steps[0].percentage: must be a number"),
        ({"ramp": {"steps": [{"at": 1}]}}, "ramp.steps[0]: needs 'percentage'"),
        (
            {"ramp": {"steps": [{"at": 5, "percentage": 1}, {"at": 5, "percentage": 2}]}},
            "ramp.steps[1].at: must be after",
        ),
        (
            {"ramp": {"steps": [{"at": 1, "percentage": 10}, {"at": 2, "percentage": 5}]}},
            "ramp.steps[1].percentage: 5 is less than ramp.steps[0].percentage (10)",
        ),
        ({"guardrails": {}}, "guardrails: must be a list"),
        ({"guardrails": [{"metric": "errors"}]}, "guardrails[0].max_increase: must be a rate increase"),
        ({"guardrails": [{"metric": "", "max_increase": 0.1}]}, "guardrails[0].metric: must be a metric"),
        ({"guardrails": [{"metric": "e", "max_increase": 0.1, "min_units": 0}]}, "guardrails[0].min_units"),
        (
            {"guardrails": [{"metric": "e", "max_increase": 0.1, "min_unit": 5}]},
            "guardrails[0].min_unit: unknown key",
        ),
    ],
)
def test_validation_messages(doc: Any, message: str) -> None:
    assert message in problems(doc)


def test_guardrails_parse() -> None:
    flag = parse_flag(
        "f", {**RAMP, "guardrails": [{"metric": "errors", "max_increase": 0.02, "min_units": 500}]}
    )
    assert flag.guardrails == (Guardrail("errors", 0.02, 500),)
    assert parse_flag(
        "f", {"percentage": 5, "guardrails": [{"metric": "e", "max_increase": 0.5}]}
    ).guardrails == (Guardrail("e", 0.5, 100),)


def test_existing_documents_are_unchanged() -> None:
    flag = parse_flag("f", {"percentage": 25})
    assert flag.ramp is None and flag.schedule is None and not flag.needs_clock and flag.guardrails == ()


@pytest.mark.timeout(30)
def test_the_client_reads_the_clock_for_a_ramp() -> None:
    """No context time needed: the client reads its clock as for a schedule."""
    store = MemoryStore.from_url(unique_memory_url())
    now = time.time()
    doc = {
        "ramp": {
            "steps": [{"at": now - 60, "percentage": 100}, {"at": now + 3600 * 24 * 365, "percentage": 100}]
        }
    }
    later = {"ramp": {"steps": [{"at": now + 3600 * 24 * 365, "percentage": 100}]}}
    store.put("ramped", json.dumps(doc))
    store.put("later", json.dumps(later))
    try:
        with flagstaff.connect(store.url, timeout=5) as client:
            assert eventually(lambda: client.evaluate("later", "u1").reason is Reason.DEFAULT)
            assert client.is_enabled("ramped", "u1") is True
            assert client.evaluate("ramped", "u1").rule == "ramp[0]"
            assert client.all("u1")["ramped"].enabled is True
            assert client.is_enabled("later", "u1") is False
    finally:
        store.close()


SCHEMA_CASES: list[tuple[Any, bool]] = [
    (RAMP, True),
    ({**RAMP, "guardrails": [{"metric": "errors", "max_increase": 0.02, "min_units": 500}]}, True),
    ({**RAMP, "percentage": 5}, False),
    ({"ramp": {"steps": []}}, False),
    ({"ramp": {"steps": [{"at": 1}]}}, False),
    ({"ramp": {"steps": [{"at": 1, "percentage": 101}]}}, False),
    ({"ramp": {"steps": [{"at": 1, "percentage": 5, "x": 1}]}}, False),
    ({"ramp": {"stpes": []}}, False),
    ({"guardrails": [{"metric": "e", "max_increase": 0}]}, False),
    ({"guardrails": [{"metric": "e", "max_increase": 0.1, "min_units": 0}]}, False),
]


@pytest.mark.parametrize(("doc", "valid"), SCHEMA_CASES)
def test_the_schema_agrees_with_the_parser(doc: Any, valid: bool) -> None:
    schema = json_schema()
    props = schema["$defs"]["flag"]["properties"]
    assert tuple(props["ramp"]["properties"]) == RAMP_KEYS
    assert tuple(props["ramp"]["properties"]["steps"]["items"]["properties"]) == RAMP_STEP_KEYS
    assert tuple(props["guardrails"]["items"]["properties"]) == GUARDRAIL_KEYS
    by_schema = Draft202012Validator(schema).is_valid(doc)
    try:
        parse_flag("f", doc)
        by_parser = True
    except ValidationError:
        by_parser = False
    assert by_schema == by_parser == valid
