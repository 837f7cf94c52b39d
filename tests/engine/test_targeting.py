"""Ordered targeting rules, their serves, the default serve, ``bucket_by`` any attribute,
``deny`` and ``values`` (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstaff import Context, Decision, Reason, ValidationError, evaluate, parse_flag
from flagstaff.bucketing import BucketingMode, in_percentage

IDS = [f"id-{i}" for i in range(2000)]


def problems(document: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        parse_flag("f", document)
    return [(p.path, p.message) for p in info.value.problems]


def decide(document: Any, **context: Any) -> Decision:
    return evaluate(parse_flag("f", document), Context.from_dict(context))


def rule(serve: Any, **conditions: Any) -> dict[str, Any]:
    return {"targeting": [{**conditions, "serve": serve}]}


# --------------------------------------------------------------------------- serve forms


@pytest.mark.parametrize(
    ("serve", "enabled", "variant"),
    [
        ("on", True, None),
        (True, True, None),
        ("off", False, None),
        (False, False, None),
        ({"variant": "big"}, True, "big"),
        ({"percentage": 100}, True, None),
        ({"percentage": 0}, False, None),
        ({"variants": {"only": 100}}, True, "only"),
        ({"variants": {"none": 0}}, False, None),
    ],
)
def test_every_serve_form(serve: Any, enabled: bool, variant: str | None) -> None:
    d = decide(rule(serve), user_id="u")
    assert d == Decision("f", enabled, Reason.RULE, variant=variant, rule="targeting[0]")


def test_first_matching_rule_wins_in_order() -> None:
    doc = {
        "targeting": [
            {"users": ["alice"], "serve": {"variant": "a"}},
            {"groups": ["beta"], "serve": {"variant": "b"}},
            {"serve": {"variant": "c"}},
        ]
    }
    assert decide(doc, user_id="alice", groups=["beta"]).variant == "a"
    assert decide(doc, user_id="bob", groups=["beta"]).rule == "targeting[1]"
    assert decide(doc, user_id="bob").variant == "c"  # no condition: everyone
    assert decide(doc, user_id="bob").reason is Reason.RULE


def test_conditions_of_one_rule_all_hold() -> None:
    doc = rule(
        "on",
        groups=["beta"],
        users=["alice", "Bob"],
        when=[
            {"attribute": "plan", "op": "eq", "value": "pro"},
            {"attribute": "seats", "op": "gt", "value": 5},
        ],
    )
    assert decide(doc, user_id="alice", groups=["beta"], plan="pro", seats=6).enabled
    assert decide(doc, user_id="x", user_name="BOB", groups=["beta"], plan="pro", seats=6).enabled
    for missing in ({"groups": []}, {"plan": "free"}, {"seats": 1}, {"user_id": "carol"}):
        ctx = {"user_id": "alice", "groups": ["beta"], "plan": "pro", "seats": 6, **missing}
        assert decide(doc, **ctx).reason is Reason.DEFAULT, missing


def test_the_default_serve_when_no_rule_matched() -> None:
    doc = {"targeting": [{"users": ["vip"], "serve": "off"}], "default": {"variant": "base"}}
    assert decide(doc, user_id="u") == Decision("f", True, Reason.DEFAULT, variant="base", rule="default")
    assert decide(doc, user_id="vip") == Decision("f", False, Reason.RULE, rule="targeting[0]")
    # Without a default: today's fallback, unchanged.
    assert decide({"targeting": [{"users": ["vip"], "serve": "on"}]}, user_id="u") == Decision(
        "f", False, Reason.DEFAULT
    )
    # A default alone is the whole flag: a constant.
    flag = parse_flag("f", {"default": "on"})
    assert flag.constant == Decision("f", True, Reason.DEFAULT, rule="default")


def test_selectors_and_the_experiment_come_before_targeting() -> None:
    doc = {"admin": True, "percentage": 0, "targeting": [{"serve": "off"}], "default": "on"}
    assert decide(doc, user_id="u", groups=["admin"]).reason is Reason.TARGET
    assert decide(doc, user_id="u").rule == "targeting[0]"
    # "enabled": "on" decides before targeting is reached.
    assert decide({"enabled": "on", "targeting": [{"serve": "off"}]}, user_id="u").reason is Reason.ON


def test_decisions_are_prebuilt() -> None:
    flag = parse_flag(
        "f", {"targeting": [{"groups": ["beta"], "serve": {"percentage": 50}}], "default": "off"}
    )
    ctx = Context(user_id="id-1", groups=frozenset({"beta"}))
    assert evaluate(flag, ctx) is evaluate(flag, ctx)
    assert evaluate(flag, Context(user_id="x")) is evaluate(flag, Context(user_id="y"))


# --------------------------------------------------------------------------- rollouts and splits


def test_a_rule_rollout_is_the_flag_percentage_bucket() -> None:
    for mode in ("flagstaff", "rollout", "hanoi", "reddit", "modulo100"):
        served = parse_flag("f", {"bucketing": mode, **rule({"percentage": 30})})
        plain = parse_flag("f", {"bucketing": mode, "percentage": 30})
        for uid in [*IDS[:300], *map(str, range(300))]:
            ctx = Context(user_id=uid)
            assert evaluate(served, ctx).enabled is evaluate(plain, ctx).enabled, (mode, uid)


def test_a_rule_rollout_matches_the_reference() -> None:
    flag = parse_flag("f", {"salt": "s", **rule({"percentage": 12.5})})
    for uid in IDS:
        expect = in_percentage(BucketingMode.FLAGSTAFF, "s", uid, 12.5)
        assert evaluate(flag, Context(user_id=uid)).enabled is expect


def test_the_first_variant_of_a_split_holds_the_users_of_the_same_percentage() -> None:
    split = parse_flag("f", rule({"variants": {"a": 25, "b": 50}}))
    pct = parse_flag("f", rule({"percentage": 25}))
    wider = parse_flag("f", rule({"percentage": 75}))
    counts = {"a": 0, "b": 0, None: 0}
    for uid in IDS:
        ctx = Context(user_id=uid)
        d = evaluate(split, ctx)
        counts[d.variant] += 1
        assert (d.variant == "a") is evaluate(pct, ctx).enabled
        assert (d.variant is not None) is evaluate(wider, ctx).enabled
        assert d.enabled is (d.variant is not None)
    assert 400 < counts["a"] < 600 and 900 < counts["b"] < 1100 and 400 < counts[None] < 600


def test_a_context_without_the_key_is_not_enabled_by_a_rollout_or_split() -> None:
    doc = {"targeting": [{"groups": ["beta"], "serve": {"variants": {"a": 50, "b": 50}}}]}
    assert decide(doc, groups=["beta"]) == Decision("f", False, Reason.RULE, rule="targeting[0]")
    doc = rule({"percentage": 50, "bucket_by": "org"})
    assert decide(doc, user_id="u") == Decision("f", False, Reason.RULE, rule="targeting[0]")


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 100, allow_nan=False),
    st.floats(0, 100, allow_nan=False),
    st.sampled_from(["flagstaff", "rollout", "hanoi", "reddit"]),
)
def test_raising_a_rule_percentage_never_removes_a_user(a: float, b: float, mode: str) -> None:
    low, high = sorted((a, b))
    doc: dict[str, Any] = {
        "bucketing": mode,
        "targeting": [{"groups": ["beta"], "serve": {"percentage": low}}],
    }
    before = parse_flag("f", doc)
    doc["targeting"][0]["serve"]["percentage"] = high
    after = parse_flag("f", doc)
    for uid in IDS[:500]:
        ctx = Context(user_id=uid, groups=frozenset({"beta"}))
        if evaluate(before, ctx).enabled:
            assert evaluate(after, ctx).enabled, uid


@settings(max_examples=40, deadline=None)
@given(st.floats(0, 50, allow_nan=False), st.floats(0, 50, allow_nan=False))
def test_raising_the_last_weight_of_a_split_moves_nobody_between_variants(a: float, extra: float) -> None:
    before = parse_flag("f", rule({"variants": {"a": 50, "b": a}}))
    after = parse_flag("f", rule({"variants": {"a": 50, "b": min(50.0, a + extra)}}))
    for uid in IDS[:500]:
        ctx = Context(user_id=uid)
        was = evaluate(before, ctx).variant
        if was is not None:
            assert evaluate(after, ctx).variant == was


# --------------------------------------------------------------------------- bucket_by


def test_bucket_by_user_and_cookie_keep_todays_meaning() -> None:
    for by in ("user", "cookie"):
        explicit = parse_flag("f", {"percentage": 40, "bucket_by": by})
        for uid in IDS[:300]:
            for ctx in (Context(user_id=uid), Context(cookie_id=uid), Context(user_id=uid, cookie_id="c")):
                key = ctx.cookie_id if by == "cookie" else ctx.bucketing_id
                expect = key is not None and in_percentage(BucketingMode.FLAGSTAFF, "f", key, 40)
                assert evaluate(explicit, ctx).enabled is expect


def test_bucket_by_an_attribute() -> None:
    flag = parse_flag("f", {"bucket_by": "account", "percentage": 50})
    inside = [a for a in IDS if in_percentage(BucketingMode.FLAGSTAFF, "f", a, 50)]
    outside = [a for a in IDS if a not in inside]
    for user in ("u1", "u2", None):
        assert evaluate(flag, Context(user_id=user, attributes={"account": inside[0]})).enabled
        assert not evaluate(flag, Context(user_id=user, attributes={"account": outside[0]})).enabled
    # Without the attribute: not bucketed, not in the percentage (never an exception).
    assert evaluate(flag, Context(user_id=inside[0])) == Decision("f", False, Reason.DEFAULT)
    # A built-in context field is an attribute too.
    by_location = parse_flag("f", {"bucket_by": "location", "percentage": 50})
    assert evaluate(by_location, Context(location=inside[0])).enabled


def test_bucket_by_int_bool_and_other_values() -> None:
    flag = parse_flag("f", {"bucket_by": "org", "percentage": 50})
    ints = [n for n in range(200) if in_percentage(BucketingMode.FLAGSTAFF, "f", str(n), 50)]
    for n in range(200):
        expect = n in ints
        assert evaluate(flag, Context(attributes={"org": n})).enabled is expect
        assert evaluate(flag, Context(attributes={"org": str(n)})).enabled is expect
    for odd in (True, False, 1.0, None, "", ["a"], {"a": 1}):
        assert not evaluate(flag, Context(attributes={"org": odd})).enabled, odd


def test_bucket_by_a_list_takes_the_first_present() -> None:
    flag = parse_flag("f", {"bucket_by": ["account", "device", "user"], "percentage": 50})
    single = parse_flag("f", {"bucket_by": "account", "percentage": 50})
    user = parse_flag("f", {"percentage": 50})
    for key in IDS[:300]:
        assert evaluate(flag, Context(user_id="zz", attributes={"account": key})) == evaluate(
            single, Context(attributes={"account": key})
        )
        by_device = evaluate(flag, Context(user_id="zz", attributes={"device": key})).enabled
        assert by_device is in_percentage(BucketingMode.FLAGSTAFF, "f", key, 50)
        assert evaluate(flag, Context(user_id=key)).enabled is evaluate(user, Context(user_id=key)).enabled
    assert evaluate(flag, Context()).reason is Reason.DEFAULT


def test_an_attribute_bucket_by_applies_to_serves_variants_and_the_experiment() -> None:
    serve = parse_flag("f", {"bucket_by": "org", **rule({"variants": {"a": 50, "b": 50}})})
    listed = parse_flag("f", {"bucket_by": "org", "everyone": True, "variants": ["x", "y"]})
    exp = parse_flag("f", {"bucket_by": "org", "experiment": {"everyone": True, "variants": {"t": 30}}})
    for org in IDS[:200]:
        answers = set()
        for user in ("u1", "u2", "u3"):
            ctx = Context(user_id=user, attributes={"org": org})
            answers.add(
                (evaluate(serve, ctx).variant, evaluate(listed, ctx).variant, evaluate(exp, ctx).variant)
            )
        assert len(answers) == 1, org  # every user of one org: one bucket
    ctx = Context(user_id="u1")  # no org
    assert evaluate(serve, ctx).variant is None
    assert evaluate(listed, ctx) == Decision("f", True, Reason.TARGET, rule="everyone")
    assert evaluate(exp, ctx).reason is Reason.EXCLUDED


def test_a_serve_bucket_by_overrides_the_flags() -> None:
    flag = parse_flag("f", {"bucket_by": "org", **rule({"percentage": 50, "bucket_by": "user"})})
    plain = parse_flag("f", rule({"percentage": 50}))
    for uid in IDS[:300]:
        ctx = Context(user_id=uid, attributes={"org": "acme"})
        assert evaluate(flag, ctx).enabled is evaluate(plain, ctx).enabled


# --------------------------------------------------------------------------- deny


DENY = {
    "users": ["u-banned"],
    "groups": ["banned"],
    "rules": [{"attribute": "country", "op": "eq", "value": "KP"}],
}


@pytest.mark.parametrize(
    "document",
    [
        {"everyone": True},
        {"enabled": "on"},
        {"enabled": "on", "url": {"try": "b"}},
        {"users": ["u-banned"], "percentage": 100},
        {"experiment": {"everyone": True, "variants": {"a": 33}}},
        {"targeting": [{"serve": "on"}]},
        {"default": "on"},
        {"variants": ["x"], "everyone": True},
    ],
)
def test_deny_beats_everything_but_the_kill_switch(document: dict[str, Any]) -> None:
    flag = parse_flag("f", {**document, "deny": DENY})
    assert flag.constant is None
    denied = [
        (Context(user_id="u-banned", features=("try",)), "deny.users"),
        (Context(user_id="x", user_name="U-BANNED"), "deny.users"),
        (Context(user_id="x", groups=frozenset({"banned"})), "deny.groups"),
        (Context(user_id="x", attributes={"country": "KP"}), "deny.rules[0]"),
    ]
    for ctx, where in denied:
        assert evaluate(flag, ctx) == Decision("f", False, Reason.DENIED, rule=where)
    assert evaluate(flag, Context(user_id="x", features=("try",))).reason is not Reason.DENIED
    killed = parse_flag("f", {**document, "deny": DENY, "enabled": "off"})
    assert evaluate(killed, Context(user_id="u-banned")).reason is Reason.OFF


def test_deny_comes_before_the_schedule() -> None:
    flag = parse_flag("f", {"enabled": "on", "schedule": {"start": 2000}, "deny": {"users": ["b"]}})
    assert evaluate(flag, Context(user_id="b"), now=1000).reason is Reason.DENIED
    assert evaluate(flag, Context(user_id="b")).reason is Reason.DENIED  # no time at all
    assert evaluate(flag, Context(user_id="a"), now=1000).reason is Reason.SCHEDULE
    assert evaluate(flag, Context(user_id="a")).reason is Reason.ERROR
    assert evaluate(flag, Context(user_id="a"), now=3000).reason is Reason.ON


# --------------------------------------------------------------------------- values


def test_values_keys_are_declared_variants_or_on_off() -> None:
    parse_flag("f", {"variants": ["a"], "values": {"a": 1, "on": True, "off": None}})
    parse_flag(
        "f", {"experiment": {"everyone": True, "variants": {"t": 10}}, "values": {"t": 1, "control_1": 0}}
    )
    parse_flag(
        "f", {**rule({"variants": {"s": 50}}), "default": {"variant": "d"}, "values": {"s": "x", "d": []}}
    )
    parse_flag("f", {"url": {"try": "forced"}, "values": {"forced": {"a": [1]}}})
    assert problems({"variants": ["blue"], "values": {"bleu": 1}}) == [
        ("values.bleu", "not a variant of this flag (it has blue, off, on); did you mean 'blue'?")
    ]
    assert problems({"values": []}) == [
        ("values", "must be an object mapping variant names (or 'on'/'off') to values")
    ]


def test_value_of_a_decision() -> None:
    flag = parse_flag(
        "f", {**rule({"variant": "big"}, users=["a"]), "values": {"big": {"n": 50}, "off": {"n": 10}}}
    )
    assert flag.value_of(evaluate(flag, Context(user_id="a"))) == {"n": 50}
    assert flag.value_of(evaluate(flag, Context(user_id="b"))) == {"n": 10}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("document", "path", "says"),
    [
        ({"targeting": {}}, "targeting", "must be a non-empty list of rules"),
        ({"targeting": ["on"]}, "targeting[0]", "must be an object such as"),
        ({"targeting": [{"groups": ["beta"]}]}, "targeting[0].serve", "a targeting rule needs a 'serve'"),
        ({"targeting": [{"grups": ["b"], "serve": "on"}]}, "targeting[0].grups", "did you mean 'groups'?"),
        (
            {"targeting": [{"segment": ["s"], "serve": "on"}]},
            "targeting[0].segment",
            "did you mean 'segments'?",
        ),
        ({"targeting": [{"users": "a", "serve": "on"}]}, "targeting[0].users", "must be a list of strings"),
        ({"targeting": [{"when": [], "serve": "on"}]}, "targeting[0].when", "non-empty list of clauses"),
        (
            {"targeting": [{"when": [{"attribute": "p", "op": "eqq", "value": 1}], "serve": "on"}]},
            "targeting[0].when[0].op",
            'unknown operator "eqq"',
        ),
        ({"targeting": [{"segments": [], "serve": "on"}]}, "targeting[0].segments", "at least one segment"),
        ({"targeting": [{"serve": "yes"}]}, "targeting[0].serve", "must be 'on', 'off'"),
        (
            {"targeting": [{"serve": {}}]},
            "targeting[0].serve",
            "exactly one of 'variant', 'percentage' or 'variants'",
        ),
        (
            {"targeting": [{"serve": {"variant": "a", "percentage": 5}}]},
            "targeting[0].serve",
            "not variant and percentage",
        ),
        (
            {"targeting": [{"serve": {"percentage": 101}}]},
            "targeting[0].serve.percentage",
            "between 0 and 100, not 101",
        ),
        (
            {"targeting": [{"serve": {"percent": 10}}]},
            "targeting[0].serve.percent",
            "did you mean 'percentage'?",
        ),
        (
            {"targeting": [{"serve": {"variants": {"a": 60, "b": 50}}}]},
            "targeting[0].serve.variants",
            "add up to 110%",
        ),
        (
            {"targeting": [{"serve": {"variants": {"a": -1}}}]},
            "targeting[0].serve.variants.a",
            "must be a percentage",
        ),
        (
            {"targeting": [{"serve": {"percentage": 5, "bucket_by": 3}}]},
            "targeting[0].serve.bucket_by",
            "must be 'user'",
        ),
        ({"default": {"variant": ""}}, "default.variant", "must be a variant name"),
        ({"deny": []}, "deny", "must be an object with 'users'"),
        ({"deny": {"user": ["a"]}}, "deny.user", "did you mean 'users'?"),
        ({"deny": {"rules": [{"attribute": "a"}]}}, "deny.rules[0].op", "unknown operator"),
        ({"deny": {"segments": ["segment:x"]}}, "deny.segments[0]", "without the prefix: 'x'"),
    ],
)
def test_bad_targeting_names_the_field(document: Any, path: str, says: str) -> None:
    found = problems(document)
    assert any(p == path and says in m for p, m in found), found
