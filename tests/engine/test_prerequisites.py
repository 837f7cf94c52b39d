"""Prerequisites: a flag that requires what another flag serves, in the same snapshot (issue 14)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from flagstaff import Context, Decision, Reason, ValidationError, evaluate, parse_flag
from flagstaff.checks import _DEPTH
from flagstaff.model import Flag
from flagstaff.segments import Segment


@dataclass
class Env:
    flags: dict[str, Flag] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    holdouts: tuple[Segment, ...] = ()


def snapshot(**documents: Any) -> Env:
    """Every flag parsed and linked to one env (as the snapshot does)."""
    env = Env()
    parsed = {name: parse_flag(name, doc) for name, doc in documents.items()}
    env.flags = {name: flag.linked(env) for name, flag in parsed.items()}
    return env


def problems(document: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        parse_flag("f", document)
    return [(p.path, p.message) for p in info.value.problems]


@pytest.mark.parametrize(
    ("document", "path", "says"),
    [
        ({"prerequisites": "x"}, "prerequisites", "must be a non-empty list"),
        ({"prerequisites": []}, "prerequisites", "must be a non-empty list"),
        ({"prerequisites": [5]}, "prerequisites[0]", "must be a flag name or an object"),
        ({"prerequisites": ["f"]}, "prerequisites[0]", "a flag cannot be its own prerequisite"),
        ({"prerequisites": ["a b"]}, "prerequisites[0].flag", 'must name a flag, not "a b"'),
        ({"prerequisites": [{"variant": "b"}]}, "prerequisites[0]", "must name a flag, not null"),
        (
            {"prerequisites": [{"flag": "x", "varient": "b"}]},
            "prerequisites[0].varient",
            "did you mean 'variant'?",
        ),
        (
            {"prerequisites": [{"flag": "x", "variant": "b", "enabled": True}]},
            "prerequisites[0]",
            "not variant and enabled",
        ),
        (
            {"prerequisites": [{"flag": "x", "variants": []}]},
            "prerequisites[0].variants",
            "at least one variant",
        ),
        (
            {"prerequisites": [{"flag": "x", "enabled": "no"}]},
            "prerequisites[0].enabled",
            "must be true or false",
        ),
        ({"prerequisites": ["x", {"flag": "x"}]}, "prerequisites[1]", "'x' is already a prerequisite"),
    ],
)
def test_bad_prerequisites_name_the_field(document: Any, path: str, says: str) -> None:
    found = problems(document)
    assert any(p == path and says in m for p, m in found), found


def test_the_forms_and_requires() -> None:
    flag = parse_flag(
        "f",
        {
            "prerequisites": [
                "a",
                {"flag": "b", "variant": "x"},
                {"flag": "c", "variants": ["x", "y"]},
                {"flag": "d", "enabled": False},
            ],
            "everyone": True,
        },
    )
    assert flag.requires == ("a", "b", "c", "d") and flag.needs_env and flag.constant is None


def test_each_requirement() -> None:
    env = snapshot(
        on={"users": ["alice", "bob"]},
        pick={"everyone": True, "variants": ["x", "y"]},
        needs_on={"prerequisites": ["on"], "everyone": True},
        needs_x={"prerequisites": [{"flag": "pick", "variant": "x"}], "everyone": True},
        needs_xy={"prerequisites": [{"flag": "pick", "variants": ["x", "y"]}], "everyone": True},
        needs_off={"prerequisites": [{"flag": "on", "enabled": False}], "everyone": True},
    )
    f = env.flags
    for uid in ("alice", "carol"):
        ctx = Context(user_id=uid)
        on = evaluate(f["on"], ctx).enabled
        assert evaluate(f["needs_on"], ctx).enabled is on
        assert evaluate(f["needs_off"], ctx).enabled is not on
    for i in range(50):
        ctx = Context(user_id=f"u{i}")
        picked = evaluate(f["pick"], ctx).variant
        got = evaluate(f["needs_x"], ctx)
        if picked == "x":
            assert got == Decision("needs_x", True, Reason.TARGET, rule="everyone")
        else:
            assert got == Decision("needs_x", False, Reason.PREREQUISITE, rule="pick")
        assert evaluate(f["needs_xy"], ctx).enabled
    # Without an id nothing is picked: {"variants": [...]} fails.
    assert evaluate(f["needs_xy"], Context()).reason is Reason.PREREQUISITE


def test_a_missing_prerequisite_fails_with_an_error() -> None:
    flag = parse_flag("f", {"prerequisites": ["gone"], "enabled": "on"})
    expect = Decision("f", False, Reason.PREREQUISITE, rule="gone", error="no flag named 'gone'")
    assert evaluate(flag, Context(user_id="u")) == expect  # unlinked: the empty env
    assert evaluate(flag.linked(snapshot(other={"everyone": True})), Context(user_id="u")) == expect


def test_a_chain() -> None:
    env = snapshot(
        a={"users": ["alice"]},
        b={"prerequisites": ["a"], "everyone": True},
        c={"prerequisites": ["b"], "groups": ["beta"]},
    )
    beta = frozenset({"beta"})
    assert evaluate(env.flags["c"], Context(user_id="alice", groups=beta)).reason is Reason.TARGET
    assert evaluate(env.flags["c"], Context(user_id="bob", groups=beta)) == Decision(
        "c", False, Reason.PREREQUISITE, rule="b"
    )
    # The prerequisite holds, then the flag's own selectors decide.
    assert evaluate(env.flags["c"], Context(user_id="alice")).reason is Reason.DEFAULT


def test_a_cycle_returns_a_decision_and_never_raises() -> None:
    # Built by hand: the admin refuses a cycle at write time, a snapshot breaks one; the
    # engine's depth guard is the last line.
    env = snapshot(
        a={"prerequisites": ["b"], "everyone": True},
        b={"prerequisites": ["a"], "everyone": True},
        self_loop={"prerequisites": ["c"], "everyone": True},
        c={"prerequisites": ["self_loop"], "everyone": True},
    )
    for name in env.flags:
        d = evaluate(env.flags[name], Context(user_id="u"))
        assert (d.enabled, d.reason) == (False, Reason.PREREQUISITE)
        assert d.error == "prerequisite chain too deep or cyclic"
    assert _DEPTH.get() == 0  # the guard's counter is back to zero
    assert evaluate(parse_flag("g", {"everyone": True}), Context(user_id="u")).enabled


def test_a_long_acyclic_chain_within_the_limit_works() -> None:
    docs: dict[str, Any] = {"p0": {"everyone": True}}
    for i in range(1, 16):
        docs[f"p{i}"] = {"prerequisites": [f"p{i - 1}"], "everyone": True}
    env = snapshot(**docs)
    assert evaluate(env.flags["p15"], Context(user_id="u")).enabled
    docs["p16"] = {"prerequisites": ["p15"], "everyone": True}
    docs["p17"] = {"prerequisites": ["p16"], "everyone": True}
    env = snapshot(**docs)
    assert evaluate(env.flags["p17"], Context(user_id="u")).error == "prerequisite chain too deep or cyclic"


def test_order_kill_switch_deny_schedule_prerequisites_then_forcing() -> None:
    env = snapshot(
        off="off",
        gated={"prerequisites": ["off"], "enabled": "on", "url": {"try": "b"}, "deny": {"users": ["banned"]}},
        killed={"prerequisites": ["off"], "enabled": "off"},
        timed={"prerequisites": ["off"], "everyone": True, "schedule": {"start": 2000}},
    )
    f = env.flags
    assert evaluate(f["gated"], Context(user_id="u", features=("try",))) == Decision(
        "gated", False, Reason.PREREQUISITE, rule="off"
    )
    assert evaluate(f["gated"], Context(user_id="banned")).reason is Reason.DENIED
    assert evaluate(f["killed"], Context(user_id="u")).reason is Reason.OFF
    assert evaluate(f["timed"], Context(user_id="u"), now=1000).reason is Reason.SCHEDULE
    assert evaluate(f["timed"], Context(user_id="u"), now=3000).reason is Reason.PREREQUISITE


def test_a_scheduled_prerequisite_is_decided_at_the_evaluators_time() -> None:
    env = snapshot(
        launch={"enabled": "on", "schedule": {"start": 2000}},
        after={"prerequisites": ["launch"], "everyone": True},
    )
    after = env.flags["after"]
    assert evaluate(after, Context(user_id="u"), now=1000).reason is Reason.PREREQUISITE
    assert evaluate(after, Context(user_id="u"), now=3000).enabled
    assert evaluate(after, Context(user_id="u", time=3000)).enabled
    # No time at all: the prerequisite cannot be decided, so it fails.
    assert evaluate(after, Context(user_id="u")).reason is Reason.PREREQUISITE


def test_a_prerequisite_that_fails_to_evaluate_fails_the_requirement() -> None:
    env = snapshot(
        odd={"rules": [{"attribute": "plan", "op": "eq", "value": "pro"}]},
        needs={"prerequisites": [{"flag": "odd", "enabled": False}], "everyone": True},
    )

    class Hostile:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("boom")

        __hash__ = object.__hash__

    d = evaluate(env.flags["needs"], Context(user_id="u", attributes={"plan": Hostile()}))
    assert d == Decision("needs", False, Reason.PREREQUISITE, rule="odd")
