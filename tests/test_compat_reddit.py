"""reddit's feature API over flagstaff: README goldens, selectors, experiments,
bucketing events, live-config parsing, and a context-local world."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from flagstaff.compat.reddit import (
    BucketingEvent,
    ContextWorld,
    Features,
    RedditUser,
    Request,
    live_config_document,
    parse_live_config,
)
from flagstaff.errors import ClientError

SOME_FLAG = (
    'feature_some_flag = {"experiment": {"loggedin": true, "experiment_id": 12345, '
    '"variants": {"test_something": 5.5, "test_something_else": 10}}}'
)


def sha1_bucket(name: str, seed: str) -> int:
    """reddit's bucket, written out independently of flagstaff.bucketing."""
    return int(hashlib.sha1((name + seed).encode()).hexdigest(), 16) % 1000


def reddit_choice(bucket: int, variants: dict[str, float]) -> str | None:
    pool = {"control_1": 10.0, "control_2": 10.0, **variants}
    names = sorted(pool)
    cand = names[bucket % len(names)]
    return cand if bucket < pool[cand] * len(names) * 10 else None


def user(fullname: str, name: str = "someone", **kw: bool) -> RedditUser:
    return RedditUser(fullname=fullname, name=name, **kw)


@pytest.fixture
def events() -> list[BucketingEvent]:
    return []


@pytest.fixture
def world() -> ContextWorld:
    return ContextWorld(admins={"alice"})


@pytest.fixture
def features(world: ContextWorld, events: list[BucketingEvent]) -> Iterator[Features]:
    text = "\n".join(
        [
            "# reddit live config",
            SOME_FLAG,
            'feature_pct_flag = {"percent_loggedin": 25.5}',
            "feature_on_flag = on",
            "feature_off_flag = off",
            'feature_admin_flag = {"admin": true}',
            'feature_users_flag = {"users": ["Umbrae", "ajacksified"]}',
            'feature_sr_flag = {"subreddits": ["wtf", "aww"]}',
            'feature_sub_flag = {"subdomains": ["beta"]}',
            'feature_oauth_flag = {"oauth_clients": ["xyzABC123"]}',
            'feature_url_flag = {"url": "public_flag_name"}',
            'feature_lo_flag = {"percent_loggedout": 25}',
            'feature_force_flag = {"url": {"some_flag_something": "test_something", "ff_ctl": "control_1"}}',
            'feature_gold_exp = {"gold": true, "experiment": {"loggedin": true, "experiment_id": 7, '
            '"variants": {"a": 5}}}',
        ]
    )
    api = Features.from_live_config(text, world, on_bucketing=events.append)
    yield api
    api.close()


def test_readme_some_flag_golden(
    features: Features, world: ContextWorld, events: list[BucketingEvent]
) -> None:
    # README: t2_1j has bucket 142; 142 % 4 == 2 -> test_something; 142 < 5.5 * 4 * 10
    assert sha1_bucket("some_flag", "t2_1j") == 142
    with world.serving(Request(user=user("t2_1j"))):
        assert features.is_enabled("some_flag") is True
        assert features.variant("some_flag") == "test_something"
        assert features.is_enabled("some_flag") is True
    assert events == [BucketingEvent(12345, "some_flag", "test_something", "t2_1j", user("t2_1j"))]


def test_readme_pct_flag_golden_uses_whole_percents(features: Features) -> None:
    # semantics 3.2: t2_br is bucket 255 in pct_flag; 255 // 10 = 25 < 25.5 -> on
    assert sha1_bucket("pct_flag", "t2_br") == 255
    assert features.is_enabled("pct_flag", user("t2_br")) is True


def test_percent_loggedin_matches_reddit_for_many_users(features: Features) -> None:
    for i in range(3000):
        fullname = f"t2_{i:x}"
        expected = sha1_bucket("pct_flag", fullname) // 10 < 25.5
        assert features.is_enabled("pct_flag", user(fullname)) is expected
    assert features.is_enabled("pct_flag") is False  # logged out: not in a loggedin percentage


def test_experiment_assignments_match_reddit(features: Features, world: ContextWorld) -> None:
    variants = {"test_something": 5.5, "test_something_else": 10}
    seen: set[str | None] = set()
    for i in range(3000):
        fullname = f"t2_{i:x}"
        expected = reddit_choice(sha1_bucket("some_flag", fullname), variants)
        seen.add(expected)
        with world.serving(Request(user=user(fullname))):
            assert features.variant("some_flag") == expected
            enabled = expected is not None and not expected.startswith("control_")
            assert features.is_enabled("some_flag") is enabled
    assert seen == {None, "control_1", "control_2", "test_something", "test_something_else"}


def test_bucketing_events_once_per_request_controls_logged_excluded_not(
    features: Features, world: ContextWorld, events: list[BucketingEvent]
) -> None:
    variants = {"test_something": 5.5, "test_something_else": 10}
    by_outcome: dict[str | None, str] = {}
    for i in range(2000):
        fullname = f"t2_{i:x}"
        by_outcome.setdefault(reddit_choice(sha1_bucket("some_flag", fullname), variants), fullname)
    control, excluded = by_outcome["control_1"], by_outcome[None]
    for _ in range(2):  # two requests: one event each
        with world.serving(Request(user=user(control))):
            assert features.is_enabled("some_flag") is False
            assert features.is_enabled("some_flag") is False
    with world.serving(Request(user=user(excluded))):
        assert features.is_enabled("some_flag") is False
    assert [(e.variant, e.bucketing_id) for e in events] == [("control_1", control)] * 2


def test_experiment_needs_eligibility_and_login(features: Features, world: ContextWorld) -> None:
    # logged out: not eligible (loggedin), and reddit buckets no logged-out users by default
    with world.serving(Request(loid="abcd1234")):
        assert features.is_enabled("some_flag") is False
        assert features.variant("some_flag") is None


def test_selectors(features: Features, world: ContextWorld) -> None:
    alice, bob = user("t2_a", "alice"), user("t2_b", "bob")
    assert features.is_enabled("on_flag") and not features.is_enabled("off_flag")
    assert not features.is_enabled("admin_flag", alice)  # explicit facts: admin=False
    assert features.is_enabled("admin_flag", user("t2_a", "alice", admin=True))
    assert not features.is_enabled("admin_flag", bob)
    assert features.is_enabled("users_flag", user("t2_u", "UMBRAE"))  # case-insensitive
    assert not features.is_enabled("users_flag", bob)
    assert features.is_enabled("sr_flag", bob, subreddit="AWW")
    assert not features.is_enabled("sr_flag", bob, subreddit="awww")
    assert features.is_enabled("sub_flag", subdomain="beta")
    assert features.is_enabled("oauth_flag", oauth_client="xyzABC123")
    assert not features.is_enabled("oauth_flag", oauth_client="XYZABC123")  # case-sensitive
    with world.serving(Request(features=["public_flag_name"], subreddit="wtf")):
        assert features.is_enabled("url_flag")
        assert features.is_enabled("sr_flag")  # the subreddit comes from the world
    assert not features.is_enabled("url_flag")


@dataclass
class Account:
    """Shaped like reddit's Account."""

    name: str
    _fullname: str
    employee: bool = False
    pref_beta: bool = False
    gold: bool = False


def test_world_describes_reddit_accounts(features: Features, world: ContextWorld) -> None:
    assert features.is_enabled("admin_flag", Account("alice", "t2_a"))
    assert not features.is_enabled("admin_flag", Account("mallory", "t2_m", employee=True))
    assert world.describe(Account("x", "t2_x", gold=True)) == RedditUser("t2_x", "x", gold=True)
    with pytest.raises(ClientError):
        world.describe(object())


def test_percent_loggedout_by_loid_without_salt(features: Features, world: ContextWorld) -> None:
    hits = 0
    for i in range(400):
        loid = f"loid{i:04d}"
        expected = int(loid[-4:], 36) % 100 < 25
        hits += expected
        with world.serving(Request(loid=loid)):
            assert features.is_enabled("lo_flag") is expected
    assert 0 < hits < 400
    with world.serving(Request(loid="not-base-36!")):
        assert features.is_enabled("lo_flag") is False
    with world.serving(Request(user=user("t2_z"), loid="zzzz0000")):
        assert features.is_enabled("lo_flag") is False  # logged in


def test_url_forces_a_variant(features: Features, world: ContextWorld) -> None:
    with world.serving(Request(features=["some_flag_something"])):
        assert features.variant("force_flag") == "test_something"
        assert features.is_enabled("force_flag")
    with world.serving(Request(features=["ff_ctl"])):
        assert features.variant("force_flag") == "control_1"
        assert not features.is_enabled("force_flag")


def test_all_enabled(features: Features, world: ContextWorld) -> None:
    with world.serving(Request(user=user("t2_1j"))):
        got = features.all_enabled()
    assert got["on_flag"] is True
    assert got["some_flag"] == {"experiment_id": 12345, "variant": "test_something"}
    assert "off_flag" not in got and "sr_flag" not in got and "admin_flag" not in got
    # reddit: an experiment flag appears only with a variant (controls included),
    # even when another selector (gold) turns it on
    for i in range(200):
        fullname = f"t2_{i:x}"
        expected = reddit_choice(sha1_bucket("gold_exp", fullname), {"a": 5})
        got = features.all_enabled(user(fullname, gold=True))
        if expected:
            assert got["gold_exp"] == {"experiment_id": 7, "variant": expected}
        else:
            assert "gold_exp" not in got
        assert features.is_enabled("gold_exp", user(fullname, gold=True))


def test_requests_are_context_local(features: Features, world: ContextWorld) -> None:
    results: dict[str, bool] = {}
    barrier = threading.Barrier(2, timeout=10)

    def serve(name: str, who: RedditUser) -> None:
        with world.serving(Request(user=who)):
            barrier.wait()
            results[name] = features.is_enabled("users_flag")

    threads = [
        threading.Thread(target=serve, args=("umbrae", user("t2_1", "umbrae"))),
        threading.Thread(target=serve, args=("bob", user("t2_2", "bob"))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {"umbrae": True, "bob": False}
    assert world.request() is None


# --------------------------------------------------------------------------- live config


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "off"),
        ("", "off"),
        ("off", "off"),
        ("on", "on"),
        ("On", "off"),
        ("true", "off"),
        ("[1, 2]", "off"),
        ("{not json", "off"),
        ('{"admin": true}', {"bucketing": "reddit", "admin": True}),
        ('{"loggedin": false, "gold": 1}', {"bucketing": "reddit", "gold": True}),
        ('{"enabled": true}', {"bucketing": "reddit"}),
        ('{"percent_loggedin": 150}', {"bucketing": "reddit", "percent_loggedin": 100}),
        ('{"enabled": "on", "users": ["a"]}', {"bucketing": "reddit", "enabled": "on", "users": ["a"]}),
    ],
)
def test_live_config_values(value: str | None, expected: Any) -> None:
    assert live_config_document(value) == expected


def test_live_config_notes_what_reddit_ignored() -> None:
    notes: list[str] = []
    doc = live_config_document('{"enabled": "off", "percent_loggedin": 10, "colour": "red"}', notes=notes)
    assert doc == {"bucketing": "reddit", "enabled": "off", "percent_loggedin": 10}
    assert any("percentages" in n for n in notes) and any("colour" in n for n in notes)


def test_parse_live_config_readme_examples() -> None:
    docs = parse_live_config(
        "feature_a = on\nfeature_b = off\nnot_a_feature = on\n"
        'feature_c = {"employee": true}\n# feature_d = on\n' + SOME_FLAG
    )
    assert set(docs) == {"a", "b", "c", "some_flag"}
    assert docs["some_flag"]["experiment"]["experiment_id"] == 12345
    assert parse_live_config({"feature_x": "on", "other": "on"}) == {"x": "on"}


def test_enabled_off_beats_percentages(world: ContextWorld) -> None:
    """A deliberate difference from reddit (docs/compat.md): off means off."""
    api = Features.from_live_config('feature_k = {"enabled": "off", "percent_loggedin": 100}', world)
    try:
        assert api.is_enabled("k", user("t2_1")) is False
    finally:
        api.close()


def test_unconfigured_feature_api_says_so() -> None:
    with pytest.raises(ClientError):
        Features().is_enabled("x")
