"""reddit's feature API over flagstaff: README goldens, selectors, experiments,
bucketing events, live-config parsing, and a context-local world."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flagstaff.compat.reddit import (
    BucketingEvent,
    ContextWorld,
    Features,
    RedditUser,
    Request,
    live_config_document,
    middleware_options,
    parse_live_config,
)
from flagstaff.errors import ClientError
from flagstaff.stores.memory import MemoryStore

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


# --------------------------------------------------------------------------- the README, line by line

ANON = None
ADMIN = RedditUser("t2_ad", "alice", admin=True)
EMPLOYEE = RedditUser("t2_em", "erin", employee=True)
GOLD = RedditUser("t2_go", "gus", gold=True)
BETA = RedditUser("t2_be", "bea", beta=True)
PLAIN = RedditUser("t2_pl", "pat")
UMBRAE = RedditUser("t2_um", "umbrae")
USER1 = RedditUser("t2_u1", "user1")

# Each live-config line of reddit's README, as written there, with who it turns on.
README_LINES: list[tuple[str, list[tuple[Request, bool]]]] = [
    ("feature_some_flag = on", [(Request(), True), (Request(user=PLAIN), True)]),
    ("feature_some_flag = off", [(Request(), False), (Request(user=ADMIN), False)]),
    ('feature_some_flag = {"admin": true}', [(Request(user=ADMIN), True), (Request(user=EMPLOYEE), False)]),
    (
        'feature_some_flag = {"employee": true}',
        [(Request(user=EMPLOYEE), True), (Request(user=ADMIN), False)],
    ),
    ('feature_some_flag = {"gold": true}', [(Request(user=GOLD), True), (Request(user=PLAIN), False)]),
    ('feature_some_flag = {"beta": true}', [(Request(user=BETA), True), (Request(user=PLAIN), False)]),
    ('feature_some_flag = {"loggedin": true}', [(Request(user=PLAIN), True), (Request(), False)]),
    ('feature_some_flag = {"loggedout": true}', [(Request(), True), (Request(user=PLAIN), False)]),
    (
        'feature_some_flag = {"url": "public_flag_name"}',
        [(Request(features=["public_flag_name"]), True), (Request(features=["other"]), False)],
    ),
    (
        'feature_some_flag = {"users": ["umbrae", "ajacksified"]}',
        [(Request(user=UMBRAE), True), (Request(user=PLAIN), False)],
    ),
    (
        'feature_some_flag = {"subreddits": ["wtf", "aww"]}',
        [(Request(subreddit="aww"), True), (Request(subreddit="pics"), False)],
    ),
    (
        'feature_some_flag = {"subdomains": ["beta"]}',
        [(Request(subdomain="beta"), True), (Request(subdomain="www"), False)],
    ),
    (
        'feature_some_flag = {"oauth_clients": ["xyzABC123"]}',
        [(Request(oauth_client="xyzABC123"), True), (Request(oauth_client="other"), False)],
    ),
    (
        'feature_some_flag = {"percent_loggedin": 25}',
        [
            (Request(user=RedditUser(f"t2_{i:x}", "u")), sha1_bucket("some_flag", f"t2_{i:x}") // 10 < 25)
            for i in range(200)
        ]
        + [(Request(), False)],
    ),
    (
        'feature_some_flag = {"percent_loggedout": 25}',
        [(Request(loid=f"lo{i:04d}"), int(f"{i:04d}", 36) % 100 < 25) for i in range(200)]
        + [(Request(), False)],  # "if there is no loid cookie the feature will be off"
    ),
    (
        'feature_some_flag = {"admin": true, "users": ["user1", "user2"]}',
        [(Request(user=ADMIN), True), (Request(user=USER1), True), (Request(user=PLAIN), False)],
    ),
]


@pytest.mark.parametrize(("line", "cases"), README_LINES, ids=[line[18:60] for line, _ in README_LINES])
def test_readme_live_config_lines(line: str, cases: list[tuple[Request, bool]], world: ContextWorld) -> None:
    api = Features.from_live_config(f"# from reddit's README\n{line}\n", world)
    try:
        for request, expected in cases:
            with world.serving(request):
                assert api.is_enabled("some_flag") is expected, (line, request)
    finally:
        api.close()


@pytest.mark.parametrize(
    "line",
    [
        # custom control group sizes
        'feature_some_flag = {"experiment": {"loggedin": true, "experiment_id": 12345, "variants": '
        '{"test_something": 5.5, "test_something_else": 10, "control_1": 20, "control_2": 20}}}',
        # mixed with gold: gold users on, an experiment for other logged-in users
        'feature_some_flag = {"gold": true, "experiment": {"loggedin": true, "experiment_id": 12345, '
        '"variants": {"test_something": 5.5, "test_something_else": 10, "control_1": 20, "control_2": 20}}}',
    ],
    ids=["custom_controls", "gold_and_experiment"],
)
def test_readme_experiments_with_custom_controls(line: str, world: ContextWorld) -> None:
    variants = {"test_something": 5.5, "test_something_else": 10, "control_1": 20, "control_2": 20}
    events: list[BucketingEvent] = []
    api = Features.from_live_config(line, world, on_bucketing=events.append)
    gold = "gold" in line
    seen: set[str | None] = set()
    try:
        for i in range(2000):
            fullname = f"t2_{i:x}"
            expected = reddit_choice(sha1_bucket("some_flag", fullname), variants)
            seen.add(expected)
            who = RedditUser(fullname, "u", gold=gold and i % 2 == 0)
            with world.serving(Request(user=who)):
                assert api.variant("some_flag") == expected
                in_test = expected is not None and not expected.startswith("control_")
                assert api.is_enabled("some_flag") is (in_test or who.gold)
    finally:
        api.close()
    assert seen == {None, "control_1", "control_2", "test_something", "test_something_else"}
    assert events and all(e.experiment_id == 12345 and e.variant is not None for e in events)


def test_world_is_greenlet_local(features: Features, world: ContextWorld) -> None:
    """reddit served requests on greenlets: each sees its own request."""
    import gevent

    def serve(who: RedditUser) -> bool:
        with world.serving(Request(user=who)):
            gevent.sleep(0.01)  # the other greenlet runs and sets its request meanwhile
            return features.is_enabled("users_flag")

    jobs = [gevent.spawn(serve, user("t2_1", "umbrae")), gevent.spawn(serve, user("t2_2", "bob"))]
    began = time.monotonic()
    gevent.joinall(jobs, timeout=10)
    waited = time.monotonic() - began
    assert [j.value for j in jobs] == [True, False], ([(j.ready(), j.exception) for j in jobs], waited)


# --------------------------------------------------------------------------- the engine's golden cases

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "reddit.json").read_text("utf-8"))


def _request(context: dict[str, Any] | None) -> Request:
    """A golden case's context as a reddit request (the inverse of the layer's mapping)."""
    ctx = context or {}
    groups = set(ctx.get("groups", ()))
    who = None
    if "user_id" in ctx:
        facts = {g: g in groups for g in ("admin", "employee", "beta", "gold")}
        who = RedditUser(ctx["user_id"], ctx.get("user_name", ctx["user_id"]), **facts)
    return Request(
        user=who,
        features=list(ctx.get("features", ())),
        subreddit=ctx.get("subreddit", ctx.get("location")),
        subdomain=ctx.get("subdomain"),
        oauth_client=ctx.get("oauth_client"),
        loid=ctx.get("cookie_id"),
    )


@pytest.fixture(scope="module")
def golden_features() -> Iterator[tuple[Features, ContextWorld]]:
    store = MemoryStore()
    for name, doc in GOLDEN["flags"].items():
        store.put(name, json.dumps(doc))
    world = ContextWorld()
    api = Features(store, world)
    yield api, world
    api.close()


@pytest.mark.parametrize(
    "case", GOLDEN["cases"], ids=[f"{i}-{c['flag']}" for i, c in enumerate(GOLDEN["cases"])]
)
def test_golden_cases_through_the_layer(
    case: dict[str, Any], golden_features: tuple[Features, ContextWorld]
) -> None:
    """tests/golden/reddit.json (the engine's golden cases) give the same answers
    through reddit's API. variant() ignores eligibility, as reddit's did, so it
    is compared where the engine assigns one."""
    api, world = golden_features
    with world.serving(_request(case["context"])):
        assert api.is_enabled(case["flag"]) is case["expect"]["enabled"], case.get("note")
        if case["expect"]["variant"] is not None:
            assert api.variant(case["flag"]) == case["expect"]["variant"]


def test_reddit_mode_keeps_unsigned_feature_values(features: Features, world: ContextWorld) -> None:
    # The world's features are the plain ?feature= values: no token, no key needed.
    with world.serving(Request(features=["public_flag_name"])):
        assert features.is_enabled("url_flag") is True
    with world.serving(Request(features=["not_the_name"])):
        assert features.is_enabled("url_flag") is False


def test_middleware_options_of_reddit_mode_take_plain_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from flagstaff.integrations.request import RequestOptions, forced_features

    monkeypatch.delenv("FLAGSTAFF_FORCE_KEY", raising=False)
    options = middleware_options(domain="reddit.com")
    assert (options.cookie, options.unsigned_forcing, options.domain) == ("loid", True, "reddit.com")
    assert forced_features(options, ["public_flag_name"]) == ("public_flag_name",)
    assert forced_features(RequestOptions(), ["public_flag_name"]) == ()  # outside reddit mode: dropped
