"""The shapes the compiler specialises (one rule, a chain of two, rules that cannot match
in a snapshot) decide exactly as the general ones."""

from __future__ import annotations

from dataclasses import fields

from flagstaff import Context, Reason, evaluate, parse_flag
from flagstaff.model import Flag
from flagstaff.segments import parse_segment
from flagstaff.snapshot import Snapshot

MEMBER = Context(user_id="m1")
OTHER = Context(user_id="o1", groups=frozenset({"beta"}))


def _linked(document: dict[str, object], segments: dict[str, list[str]]) -> Snapshot:
    flag = parse_flag("f", document)
    parsed = {name: parse_segment(name, {"users": users}) for name, users in segments.items()}
    return Snapshot({"f": flag}, 1, 0.0, parsed)


def test_a_rule_on_a_missing_segment_never_matches_and_the_next_rule_keeps_its_label() -> None:
    document = {
        "targeting": [
            {"segments": ["gone"], "serve": "on"},
            {"groups": ["beta"], "serve": {"variant": "b"}},
        ],
        "default": "off",
    }
    snap = _linked(document, {})
    d = evaluate(snap.flags["f"], OTHER)
    assert (d.enabled, d.variant, d.reason, d.rule) == (True, "b", Reason.RULE, "targeting[1]")
    d = evaluate(snap.flags["f"], MEMBER)
    assert (d.enabled, d.reason, d.rule) == (False, Reason.DEFAULT, "default")
    # The segment written later: the first rule matches again.
    d = evaluate(snap.with_segment(parse_segment("gone", {"users": ["m1"]}), 2, 0.0).flags["f"], MEMBER)
    assert (d.enabled, d.reason, d.rule) == (True, Reason.RULE, "targeting[0]")


def test_only_rules_on_missing_segments_fall_through_to_the_percentage() -> None:
    everyone = parse_flag("f", {"percentage": 100, "targeting": [{"segments": ["gone"], "serve": "off"}]})
    d = evaluate(everyone, MEMBER)  # unlinked: no segment at all
    assert (d.enabled, d.reason, d.rule) == (True, Reason.PERCENTAGE, "percentage")
    nobody = parse_flag("g", {"percentage": 0, "targeting": [{"segments": ["gone"], "serve": "on"}]})
    d = evaluate(nobody, MEMBER)
    assert (d.enabled, d.reason) == (False, Reason.DEFAULT)


def test_not_segments_of_a_missing_segment_holds_for_everyone() -> None:
    snap = _linked({"targeting": [{"not_segments": ["gone"], "serve": "on"}], "default": "off"}, {})
    d = evaluate(snap.flags["f"], MEMBER)
    assert (d.enabled, d.reason, d.rule) == (True, Reason.RULE, "targeting[0]")


def test_one_rule_and_a_chain_of_two_decide_like_the_general_shapes() -> None:
    document = {"percentage": 0.0001, "targeting": [{"segments": ["s"], "serve": "on"}]}
    snap = _linked(document, {"s": ["m1"]})
    flag = snap.flags["f"]
    d = evaluate(flag, MEMBER)
    assert (d.enabled, d.reason, d.rule) == (True, Reason.RULE, "targeting[0]")
    d = evaluate(flag, Context(user_id="nobody"))
    assert (d.enabled, d.reason) == (False, Reason.DEFAULT)
    # Three rules (the general loop) agree with one rule for the same member.
    three = _linked(
        {
            "targeting": [
                {"groups": ["x"], "serve": "off"},
                {"segments": ["s"], "serve": "on"},
                {"users": ["z"], "serve": "off"},
            ]
        },
        {"s": ["m1"]},
    ).flags["f"]
    d = evaluate(three, MEMBER)
    assert (d.enabled, d.reason, d.rule) == (True, Reason.RULE, "targeting[1]")


def test_a_lone_percentage_document_compiles_as_the_general_path() -> None:
    contexts = [Context(user_id=f"u{i}") for i in range(300)] + [Context(cookie_id="c1"), Context()]
    for p in (0, 0.5, 5, 37.25, 100):
        fast = parse_flag("f", {"percentage": p})
        general = parse_flag("f", {"percentage": p, "enabled": True})  # not the lone shape
        for f in fields(Flag):
            if f.name not in ("run", "document"):
                assert getattr(fast, f.name) == getattr(general, f.name), (p, f.name)
        assert fast.document == f'{{"percentage":{p}}}'
        assert [evaluate(fast, c) for c in contexts] == [evaluate(general, c) for c in contexts]
