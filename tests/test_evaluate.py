"""The evaluator, run over the golden cases in ``tests/golden/*.json``.

Each golden file holds ``flags`` (name -> document, the ``file://`` store
format) and ``cases``: a flag name, a context as a plain dict (the documented
keys of :mod:`flagstaff.context`), an optional ``now``, and the expected
``enabled``/``variant``/``reason`` (and ``rule`` when given). The compatibility
layers and the HTTP API run the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flagstaff import Context, Decision, Reason, evaluate, parse_flag
from flagstaff.context import to_context
from flagstaff.evaluate import unknown

GOLDEN = Path(__file__).parent / "golden"


def _cases() -> list[Any]:
    out = []
    for path in sorted(GOLDEN.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for i, case in enumerate(data["cases"]):
            doc = data["flags"][case["flag"]]
            out.append(pytest.param(case["flag"], doc, case, id=f"{path.stem}-{i}-{case['flag']}"))
    return out


@pytest.mark.parametrize(("name", "document", "case"), _cases())
def test_golden(name: str, document: Any, case: dict[str, Any]) -> None:
    flag = parse_flag(name, document)
    decision = evaluate(flag, to_context(case["context"]), case.get("now"))
    expect = case["expect"]
    assert decision.flag == name
    assert (decision.enabled, decision.variant, decision.reason.value) == (
        expect["enabled"],
        expect["variant"],
        expect["reason"],
    ), case.get("note")
    if "rule" in expect:
        assert decision.rule == expect["rule"]


def test_golden_files_cover_every_reason_but_unknown() -> None:
    seen = {c.values[2]["expect"]["reason"] for c in _cases()}
    assert seen == {r.value for r in Reason} - {Reason.UNKNOWN_FLAG.value}


def test_every_golden_flag_is_used() -> None:
    for path in sorted(GOLDEN.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert set(data["flags"]) == {c["flag"] for c in data["cases"]}, path.name


def test_decisions_are_shared_not_allocated() -> None:
    flag = parse_flag("f", {"users": ["a"], "percentage": 50})
    assert evaluate(flag, Context(user_id="a")) is evaluate(flag, Context(user_id="a"))


class _Hostile:
    """An attribute value whose comparison blows up."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("boom")

    __hash__ = object.__hash__


def test_evaluation_never_raises() -> None:
    flag = parse_flag("f", {"rules": [{"attribute": "plan", "op": "eq", "value": "pro"}]})
    decision = evaluate(flag, Context(user_id="u", attributes={"plan": _Hostile()}))
    assert decision.reason is Reason.ERROR
    assert decision.enabled is False
    assert decision.error == "RuntimeError: boom"


def test_schedule_uses_now_over_context_time() -> None:
    flag = parse_flag("f", {"enabled": "on", "schedule": {"end": 1000}})
    ctx = Context(user_id="u", time=5000)
    assert evaluate(flag, ctx).reason is Reason.SCHEDULE
    assert evaluate(flag, ctx, now=999).reason is Reason.ON


def test_unknown_flag_is_off_with_reason() -> None:
    decision = unknown("nope")
    assert decision == Decision("nope", False, Reason.UNKNOWN_FLAG, error="no flag named 'nope'")
    assert decision.to_dict() == {
        "flag": "nope",
        "enabled": False,
        "reason": "unknown_flag",
        "error": "no flag named 'nope'",
    }


def test_experiment_decision_carries_experiment_id() -> None:
    flag = parse_flag("exp", {"experiment": {"everyone": True, "experiment_id": 9, "variants": {"a": 30}}})
    for i in range(50):
        d = evaluate(flag, Context(user_id=f"u{i}"))
        if d.variant is not None:
            assert d.experiment_id == 9
        else:
            assert d.reason is Reason.EXCLUDED


def test_variant_list_only_for_enabled_users() -> None:
    flag = parse_flag("f", {"groups": ["beta"], "variants": ["x", "y"]})
    assert evaluate(flag, Context(user_id="u", groups=frozenset({"beta"}))).variant in ("x", "y")
    assert evaluate(flag, Context(user_id="u")).variant is None
    # No id to hash: enabled, but no variant can be chosen.
    assert evaluate(flag, Context(groups=frozenset({"beta"}))) == Decision(
        "f", True, Reason.TARGET, rule="groups"
    )
