"""Experiment layers and holdouts, and the bucketing they and the serves share (issue 14)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flagstaff import Context, Decision, Reason, ValidationError, evaluate, parse_flag
from flagstaff.bucketing import (
    BucketingMode,
    attribute_key,
    bucket_limit,
    bucket_value,
    flagstaff_hash,
    layer_test,
    percentage_test,
    split_chooser,
    threshold,
)
from flagstaff.model import Flag
from flagstaff.segments import Segment, parse_segment

IDS = [f"user-{i}" for i in range(10_000)]


@dataclass
class Env:
    flags: dict[str, Flag] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    holdouts: tuple[Segment, ...] = ()


def experiment(layer: tuple[str, float, float] | None = None, **extra: Any) -> dict[str, Any]:
    exp: dict[str, Any] = {"everyone": True, "experiment_id": 1, "variants": {"a": 25, "b": 25}, **extra}
    if layer is not None:
        exp["layer"] = {"name": layer[0], "range": [layer[1], layer[2]]}
    return {"experiment": exp}


# --------------------------------------------------------------------------- the shared bucket


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(BucketingMode)),
    st.text(min_size=1, max_size=12),
    st.one_of(st.text(min_size=1, max_size=12), st.integers(0, 10**6).map(str)),
    st.floats(0, 100, allow_nan=False),
)
@example(BucketingMode.MODULO100, "s", "not-an-int", 100.0)  # 100% holds every id
@example(BucketingMode.MODULO100, "s", "not-an-int", 99.0)
@example(BucketingMode.ROLLOUT, "s", "x", 100.0)
def test_bucket_value_below_bucket_limit_is_the_percentage_test(
    mode: BucketingMode, salt: str, key: str, pct: float
) -> None:
    inside = bucket_value(mode, salt)(key.encode(), key) < bucket_limit(mode, pct)
    assert inside is percentage_test(mode, salt, pct)(key.encode(), key)


def test_a_split_is_cumulative_over_the_percentage_bucket() -> None:
    choose = split_chooser(BucketingMode.FLAGSTAFF, "s", [("a", 10.0), ("b", 0.0), ("c", 20.0)], None)
    ten = percentage_test(BucketingMode.FLAGSTAFF, "s", 10)
    thirty = percentage_test(BucketingMode.FLAGSTAFF, "s", 30)
    for uid in IDS[:3000]:
        b = uid.encode()
        got = choose(b, uid)
        assert got != "b"
        assert (got == "a") is ten(b, uid)
        assert (got is not None) is thirty(b, uid)


def test_attribute_key() -> None:
    assert attribute_key("acme") == (b"acme", "acme")
    assert attribute_key(12) == (b"12", "12")
    assert attribute_key("") is None
    for odd in (True, 1.5, None, [], {}):
        assert attribute_key(odd) is None


def test_layer_test_is_the_native_hash_of_the_layer_salt() -> None:
    low = layer_test("checkout", 0, 25)
    for uid in IDS[:2000]:
        h = flagstaff_hash("layer:checkout", uid)
        assert low(uid.encode()) is (h < threshold(25))


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    ("layer", "path", "says"),
    [
        ([], "experiment.layer", "must be an object such as"),
        ({"name": "", "range": [0, 5]}, "experiment.layer.name", "non-empty string"),
        (
            {"name": "L"},
            "experiment.layer.range",
            "must be [start, end] with 0 <= start < end <= 100, not null",
        ),
        ({"name": "L", "range": [50, 50]}, "experiment.layer.range", "0 <= start < end <= 100"),
        ({"name": "L", "range": [-1, 5]}, "experiment.layer.range", "0 <= start < end <= 100"),
        ({"name": "L", "range": [0, 101]}, "experiment.layer.range", "0 <= start < end <= 100"),
        ({"name": "L", "range": [0, "5"]}, "experiment.layer.range", "0 <= start < end <= 100"),
        ({"name": "L", "range": [0, 5], "size": 1}, "experiment.layer.size", "unknown key"),
    ],
)
def test_bad_layers_name_the_field(layer: Any, path: str, says: str) -> None:
    doc = {"experiment": {"everyone": True, "variants": {"a": 10}, "layer": layer}}
    with pytest.raises(ValidationError) as info:
        parse_flag("f", doc)
    found = [(p.path, p.message) for p in info.value.problems]
    assert any(p == path and says in m for p, m in found), found


def test_two_experiments_in_one_layer_with_disjoint_ranges_never_share_a_user() -> None:
    left = parse_flag("left", experiment(("checkout", 0, 40)))
    right = parse_flag("right", experiment(("checkout", 40, 100)))
    assert left.experiment is not None and left.experiment.layer is not None
    assert (left.experiment.layer.start, left.experiment.layer.end) == (0, 40)
    in_left = in_right = 0
    for uid in IDS:
        ctx = Context(user_id=uid)
        a, b = evaluate(left, ctx), evaluate(right, ctx)
        exposed_a = a.reason is not Reason.DEFAULT
        exposed_b = b.reason is not Reason.DEFAULT
        assert exposed_a is not exposed_b, uid  # exactly one of the two ranges holds every user
        in_left += exposed_a
        in_right += exposed_b
    assert 3700 < in_left < 4300 and 5700 < in_right < 6300


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=3, max_size=3, unique=True))
def test_layers_never_overlap_for_any_split(points: list[float]) -> None:
    a, b, c = sorted(points)
    first = parse_flag("one", experiment(("L", a, b)))
    second = parse_flag("two", {"salt": "other", **experiment(("L", b, c))})
    for uid in IDS[:1500]:
        ctx = Context(user_id=uid)
        got = [evaluate(first, ctx).reason, evaluate(second, ctx).reason]
        assert got.count(Reason.DEFAULT) >= 1, uid


def test_outside_its_range_the_experiment_falls_through_like_an_ineligible_user() -> None:
    doc = {"percentage": 100, **experiment(("L", 0, 1))}
    flag = parse_flag("f", doc)
    outside = next(u for u in IDS if not layer_test("L", 0, 1)(u.encode()))
    assert evaluate(flag, Context(user_id=outside)).reason is Reason.PERCENTAGE
    doc = {"targeting": [{"serve": "off"}], **experiment(("L", 0, 1))}
    assert evaluate(parse_flag("f", doc), Context(user_id=outside)).rule == "targeting[0]"


def test_the_layer_bucket_is_the_experiment_key() -> None:
    # Logged out: the cookie id; by an attribute: that attribute.
    flag = parse_flag("f", experiment(("L", 0, 50)))
    by_org = parse_flag("f", {"bucket_by": "org", **experiment(("L", 0, 50))})
    test = layer_test("L", 0, 50)
    for uid in IDS[:500]:
        cookie = evaluate(flag, Context(cookie_id=uid)).reason is not Reason.DEFAULT
        assert cookie is test(uid.encode())
        org = evaluate(by_org, Context(user_id="same", attributes={"org": uid})).reason is not Reason.DEFAULT
        assert org is test(uid.encode())


# --------------------------------------------------------------------------- holdouts


def holdout_env(document: dict[str, Any]) -> Env:
    seg = parse_segment("holdout-2027", {"holdout": True, **document})
    other = parse_segment("staff", {"users": ["alice"]})  # not a holdout
    return Env(segments={"holdout-2027": seg, "staff": other}, holdouts=(seg,))


def test_holdout_members_see_no_experiment() -> None:
    flag = parse_flag("f", experiment())
    assert flag.experiments and flag.needs_env
    env = holdout_env({"percentage": 10})
    linked = flag.linked(env)
    seg = env.holdouts[0]
    held = 0
    for uid in IDS:
        ctx = Context(user_id=uid)
        d = evaluate(linked, ctx)
        if seg.contains(ctx):
            held += 1
            assert d == Decision("f", False, Reason.HOLDOUT, rule="holdout-2027")
        else:
            assert d == evaluate(flag, ctx)  # everyone else: as if there were no holdout
    assert 800 < held < 1200


@settings(max_examples=25, deadline=None)
@given(st.floats(0, 100, allow_nan=False), st.sampled_from(["s1", "s2", "s3"]), st.booleans())
def test_holdout_users_never_get_an_experiment_variant(pct: float, salt: str, layered: bool) -> None:
    flag = parse_flag("f", experiment(("L", 0, 60) if layered else None))
    env = holdout_env({"percentage": pct, "salt": salt})
    linked = flag.linked(env)
    for uid in IDS[:800]:
        ctx = Context(user_id=uid)
        if env.holdouts[0].contains(ctx):
            d = evaluate(linked, ctx)
            assert d.variant is None and not d.enabled and d.experiment_id is None


def test_holdout_applies_to_eligible_users_only_and_can_be_turned_off() -> None:
    env = holdout_env({"users": ["held"]})
    eligible_only = parse_flag("f", {"experiment": {"groups": ["beta"], "variants": {"a": 33}}}).linked(env)
    assert evaluate(eligible_only, Context(user_id="held")).reason is Reason.DEFAULT
    assert (
        evaluate(eligible_only, Context(user_id="held", groups=frozenset({"beta"}))).reason is Reason.HOLDOUT
    )
    free = parse_flag("f", experiment(holdout=False))
    assert not free.experiments and free.link is None
    assert evaluate(free.linked(env), Context(user_id="held")).reason is not Reason.HOLDOUT
    with pytest.raises(ValidationError, match=r"experiment\.holdout"):
        parse_flag("f", experiment(holdout="yes"))


def test_a_paused_experiment_is_not_held_out() -> None:
    flag = parse_flag("f", {"experiment": {"everyone": True, "enabled": False, "variants": {"a": 10}}})
    assert not flag.experiments and flag.link is None
