"""The shapes the compiler specialises (one rule, a chain of two, rules that cannot match
in a snapshot) decide exactly as the general ones."""

from __future__ import annotations

import zlib
from dataclasses import fields

from flagstaff import Context, Reason, evaluate, parse_flag
from flagstaff.bucketing import FMIX
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
            if f.name not in ("run", "quick", "document"):
                assert getattr(fast, f.name) == getattr(general, f.name), (p, f.name)
        assert fast.document == f'{{"percentage":{p}}}'
        assert [evaluate(fast, c) for c in contexts] == [evaluate(general, c) for c in contexts]


QUICK_DOCUMENTS: list[object] = [
    "on",
    "off",
    10,
    {"percentage": 37.25, "salt": "s"},
    {"users": ["u1", "u7"], "percentage": 5},
    {"groups": ["beta"], "percent_loggedout": 50},
    {"rules": [{"attribute": "plan", "op": "in", "value": ["pro"]}], "variants": ["a", "b"]},
    {"targeting": [{"groups": ["beta"], "serve": {"percentage": 20}}], "default": "off"},
    {"deny": {"users": ["u3"]}, "percentage": 60},
    {"archived": True, "percentage": 100},
    {"bucket_by": "org", "percentage": 50},
]
SLOW_DOCUMENTS: list[object] = [
    {"percentage": 50, "schedule": {"start": "2020-01-01T00:00:00Z"}},
    {"experiment": {"loggedin": True, "variants": {"a": 20, "b": 20}}},
    {"prerequisites": ["other"], "percentage": 50},
]


def test_quick_is_the_decision_where_only_the_context_decides() -> None:
    # Flag.quick is what Client.is_enabled calls on its fast path: it must give the decision
    # evaluate() gives, and be absent where the clock or an exposure is involved.
    contexts = [
        Context(
            user_id=f"u{i}",
            groups=frozenset({"beta"} if i % 3 else ()),
            attributes={"plan": "pro", "org": f"o{i % 7}"},
        )
        for i in range(200)
    ] + [Context(cookie_id="c1"), Context(), Context(user_id="u3", logged_in=False, cookie_id="c9")]
    for doc in QUICK_DOCUMENTS:
        flag = parse_flag("f", doc)
        assert flag.quick is not None, doc
        assert [flag.quick(c) for c in contexts] == [evaluate(flag, c) for c in contexts], doc
    for doc in SLOW_DOCUMENTS:
        assert parse_flag("f", doc).quick is None, doc


def test_quick_follows_the_segments_a_flag_is_linked_to() -> None:
    flag = _linked(
        {"targeting": [{"segments": ["s"], "serve": "on"}], "default": "off"}, {"s": ["m1"]}
    ).flags["f"]
    assert flag.quick is flag.run
    assert flag.quick(MEMBER).enabled is True
    assert flag.quick(Context(user_id="m2")).enabled is False


def _gated(flag: Flag, ctx: Context) -> bool:
    """Client.is_enabled's inline bucketing of a gated flag (Flag.gate), as it does it."""
    assert flag.gate is not None
    seed, limit = flag.gate
    key = ctx.user_key if ctx.user_key is not None else ctx.cookie_key
    return key is not None and FMIX(b"", zlib.crc32(key, seed)) < limit


def test_the_gate_is_a_plain_percentage_and_agrees_with_evaluate() -> None:
    # Flag.gate lets the client bucket a plain rollout inline: it must be set for exactly the
    # by-user percentages that are on inside and off outside, and answer as evaluate() does.
    contexts = [Context(user_id=f"u{i}") for i in range(2000)] + [
        Context(cookie_id="c1"),
        Context(),
        Context(user_id="u3", logged_in=False, cookie_id="c9"),
        Context(user_id="\udc80x"),
    ]
    gated = [{"percentage": p} for p in (0.5, 10, 37.25, 50, 99.99)] + [
        {"percentage": 10, "salt": "other"},
        {"percentage": 20, "bucket_by": "user"},
        {"enabled": True, "percentage": 30},
    ]
    for doc in gated:
        flag = parse_flag("f", doc)
        assert flag.gate is not None, doc
        assert [_gated(flag, c) for c in contexts] == [evaluate(flag, c).enabled for c in contexts], doc
    ungated = [
        {"percentage": 100},
        {"percentage": 0},
        {"percentage": 10, "bucket_by": "cookie"},
        {"percentage": 10, "bucketing": "hanoi"},
        {"percentage": 10, "users": ["u1"]},
        {"percentage": 10, "variants": ["a", "b"]},
        {"percentage": 50, "schedule": {"start": "2020-01-01T00:00:00Z"}},
        {"enabled": False, "percentage": 30},
        True,
    ]
    for doc in ungated:
        assert parse_flag("f", doc).gate is None, doc
