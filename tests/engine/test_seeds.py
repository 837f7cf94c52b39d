"""Every flag shape the seed documents show parses unchanged and behaves as they describe.

The live-config lines below are copied from reddit's r2.config.feature README
(the fourth seed); ``1`` is what the first seed writes into a ZooKeeper node;
the hanoi document is its README's ``cdc_on`` set-up written as data.
"""

from __future__ import annotations

from collections import Counter

import pytest

from flagstaff import Context, Reason, evaluate, parse_flag
from flagstaff.bucketing import BucketingMode, in_percentage
from flagstaff.document import decode_document

REDDIT_README = """
feature_some_flag = on
feature_some_flag = off
feature_some_flag = {"admin": true}
feature_some_flag = {"employee": true}
feature_some_flag = {"gold": true}
feature_some_flag = {"beta": true}
feature_some_flag = {"loggedin": true}
feature_some_flag = {"loggedout": true}
feature_some_flag = {"url": "public_flag_name"}
feature_some_flag = {"users": ["umbrae", "ajacksified"]}
feature_some_flag = {"subreddits": ["wtf", "aww"]}
feature_some_flag = {"subdomains": ["beta"]}
feature_some_flag = {"oauth_clients": ["xyzABC123"]}
feature_some_flag = {"percent_loggedin": 25}
feature_some_flag = {"percent_loggedout": 25}
feature_some_flag = {"admin": true, "users": ["user1", "user2"]}
feature_some_flag = {"experiment": {"loggedin": true, "experiment_id": 12345, "variants": {"test_something": 5.5, "test_something_else": 10}}}
feature_some_flag = {"experiment": {"loggedin": true, "experiment_id": 12345, "variants": {"test_something": 5.5, "test_something_else": 10, "control_1": 20, "control_2": 20}}}
feature_some_flag = {"gold": true, "experiment": {"loggedin": true, "experiment_id": 12345, "variants": {"test_something": 5.5, "test_something_else": 10, "control_1": 20, "control_2": 20}}}
feature_some_flag = {"url": {"some_flag_something": "test_something", "some_flag_something_else": "test_something_else"}}
"""  # noqa: E501  (copied verbatim)

LINES = [line.split(" = ", 1)[1] for line in REDDIT_README.strip().splitlines()]


@pytest.mark.parametrize("raw", LINES)
def test_every_reddit_readme_value_parses_unchanged(raw: str) -> None:
    document = decode_document(raw)
    flag = parse_flag("some_flag", document)
    assert flag.value == document  # kept as given, nothing repaired
    # ...and in reddit's bucketing mode too, for teams migrating their users.
    if isinstance(document, dict):
        assert parse_flag("some_flag", {**document, "bucketing": "reddit"}).mode is BucketingMode.REDDIT


def test_on_and_off_shorthands() -> None:
    on, off = parse_flag("f", decode_document("on")), parse_flag("f", decode_document(b" off\n"))
    for ctx in (Context(), Context(user_id="t2_a", groups=frozenset({"admin"}))):
        assert evaluate(on, ctx).enabled is True
        assert evaluate(off, ctx).enabled is False


def test_first_seed_writes_1_meaning_one_percent() -> None:
    flag = parse_flag("show_new_homepage", decode_document(b"1"))
    assert flag.percentages == {"percentage": 1.0}
    admitted = sum(evaluate(flag, Context(user_id=str(uid))).enabled for uid in range(100_000))
    assert 800 < admitted < 1200  # 1% of 100,000, within 6 sigma
    # With the seed's own rule (user_id % 100), 1% is exactly ids ending in 00.
    mod = parse_flag("show_new_homepage", {"bucketing": "modulo100", "percentage": 1})
    assert [u for u in range(1000) if evaluate(mod, Context(user_id=u)).enabled] == list(range(0, 1000, 100))


def test_reddit_selectors_or_together() -> None:
    flag = parse_flag("f", decode_document('{"admin": true, "users": ["user1", "user2"]}'))
    assert evaluate(flag, Context(user_id="1", user_name="x", groups=frozenset({"admin"}))).enabled
    assert evaluate(flag, Context(user_id="2", user_name="User2")).enabled
    assert not evaluate(flag, Context(user_id="3", user_name="x")).enabled


def test_reddit_percent_loggedin_admits_about_that_share_of_logged_in_users() -> None:
    flag = parse_flag("f", decode_document('{"percent_loggedin": 25}'))
    admitted = sum(evaluate(flag, Context(user_id=f"t2_{i}")).enabled for i in range(40_000))
    assert abs(admitted / 40_000 - 0.25) < 0.015
    assert not evaluate(flag, Context(cookie_id="abc")).enabled


def test_reddit_percent_loggedout_uses_the_loid_cookie() -> None:
    flag = parse_flag("f", decode_document('{"bucketing": "reddit", "percent_loggedout": 25}'))
    # int(loid[-4:], 36) % 100 < 25
    assert evaluate(flag, Context(cookie_id="xyzzzzz")).enabled  # 'zzzz' -> 15
    assert not evaluate(flag, Context(cookie_id="xyaaaa")).enabled  # 'aaaa' -> 90
    assert not evaluate(flag, Context()).enabled  # "if there is no loid cookie the feature will be off"
    assert not evaluate(flag, Context(user_id="t2_a", cookie_id="xyzzzzz")).enabled  # logged in


def test_reddit_readme_experiment_example() -> None:
    flag = parse_flag("some_flag", {"bucketing": "reddit", **decode_document(LINES[16])})
    decision = evaluate(flag, Context(user_id="t2_1j"))
    assert (decision.enabled, decision.variant, decision.experiment_id) == (True, "test_something", 12345)
    # Logged-out visitors are not eligible for a loggedin experiment.
    assert evaluate(flag, Context(cookie_id="t2_1j")).reason is Reason.DEFAULT


@pytest.mark.parametrize("mode", ["flagstaff", "reddit"])
def test_reddit_readme_experiment_shares(mode: str) -> None:
    # "is_enabled will return False for users who are non-eligible, fall into a
    # control group, or are excluded"; controls are 10% each unless given.
    flag = parse_flag("some_flag", {"bucketing": mode, **decode_document(LINES[16])})
    counts: Counter[str | None] = Counter()
    for i in range(50_000):
        decision = evaluate(flag, Context(user_id=f"t2_{i}"))
        counts[decision.variant] += 1
        assert decision.enabled is (decision.variant in ("test_something", "test_something_else"))
    shares = {k: v / 50_000 for k, v in counts.items()}
    for arm, expected in {"test_something": 0.055, "test_something_else": 0.10, "control_1": 0.10}.items():
        assert abs(shares[arm] - expected) < 0.01, arm
    assert abs(shares[None] - (1 - 0.055 - 0.10 - 0.20)) < 0.015


def test_reddit_readme_custom_controls_and_gold() -> None:
    flag = parse_flag("some_flag", decode_document(LINES[18]))
    gold = evaluate(flag, Context(user_id="t2_a", groups=frozenset({"gold"})))
    assert (gold.enabled, gold.reason, gold.variant) == (True, Reason.TARGET, None)
    variants = Counter(evaluate(flag, Context(user_id=f"t2_{i}")).variant for i in range(20_000))
    assert abs(variants["control_1"] / 20_000 - 0.20) < 0.015


def test_reddit_readme_forced_variant_by_url() -> None:
    flag = parse_flag("some_flag", decode_document(LINES[19]))
    forced = evaluate(flag, Context(features=("some_flag_something_else",)))
    assert (forced.enabled, forced.variant, forced.reason) == (True, "test_something_else", Reason.FORCED)


def test_reddit_controls_49_51_are_490_and_500_buckets() -> None:
    flag = parse_flag(
        "f",
        {
            "bucketing": "reddit",
            "experiment": {"everyone": True, "variants": {"control_1": 49, "control_2": 51}},
        },
    )
    counts = Counter(evaluate(flag, Context(user_id=f"u{i}")).variant for i in range(20_000))
    assert abs(counts["control_1"] / 20_000 - 0.49) < 0.015
    assert abs(counts["control_2"] / 20_000 - 0.50) < 0.015  # capped at 1/n
    # Native lanes refuse what they cannot honour instead of capping silently.
    with pytest.raises(ValueError, match=r"experiment\.variants\.control_2: 51% is more than 100/2"):
        parse_flag("f", {"experiment": {"everyone": True, "variants": {"control_1": 49, "control_2": 51}}})


HANOI_CDC_ON = {
    "bucketing": "hanoi",
    "percentage": 80,
    "users": ["447568110000"],
    "regex": "01$",
    "variants": ["foo", "bar"],
}


def test_hanoi_readme_scenario() -> None:
    flag = parse_flag("cdc_on", HANOI_CDC_ON)
    # '444401' is admitted by the regex (it ends in 01), whatever its bucket (85).
    assert evaluate(flag, Context(user_id="444401")).rule == "regex"
    assert not in_percentage(BucketingMode.HANOI, "cdc_on", "444401", 80)
    # "it will return False" for 44488: bucket 88 is not below 80.
    assert evaluate(flag, Context(user_id="44488")).enabled is False
    # "443301 matches the reg expr", and gets one of the two variants.
    decision = evaluate(flag, Context(user_id="443301"))
    assert decision.enabled and decision.rule == "regex"
    assert decision.variant in ("foo", "bar")
    assert evaluate(flag, Context(user_id="447568110000")).rule == "users"


def test_hanoi_global_enable_and_kill() -> None:
    assert evaluate(parse_flag("a", {"bucketing": "hanoi", "enabled": "on"}), Context()).enabled
    killed = parse_flag("a", {**HANOI_CDC_ON, "enabled": "off"})
    assert evaluate(killed, Context(user_id="447568110000")).reason is Reason.OFF
