"""The evaluator, run over the golden cases in ``tests/golden/*.json``.

Each golden file holds ``flags`` (name -> document, the ``file://`` store
format) and ``cases``: a flag name, a context as a plain dict (the documented
keys of :mod:`flagstaff.context`), an optional ``now``, and the expected
``enabled``/``variant``/``reason`` (and ``rule`` when given). The compatibility
layers and the HTTP API run the same files.

``tests/golden/env/*.json`` are golden files whose flags read other documents
(segments, prerequisites, holdouts): each also holds ``segments`` (name ->
segment document), and its flags and segments are one snapshot, every flag
linked to it (:class:`GoldenEnv`) before its cases are evaluated.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstaff import Context, Decision, Reason, evaluate, parse_flag
from flagstaff.context import to_context
from flagstaff.evaluate import unknown
from flagstaff.model import Flag
from flagstaff.segments import Segment, parse_segment

GOLDEN = Path(__file__).parents[1] / "golden"
GOLDEN_FILES = [*sorted(GOLDEN.glob("*.json")), *sorted((GOLDEN / "env").glob("*.json"))]


@dataclass
class GoldenEnv:
    """The snapshot of one golden file: its flags, linked to it, and its segments."""

    flags: dict[str, Flag] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    holdouts: tuple[Segment, ...] = ()


@functools.cache
def _env(path: Path) -> GoldenEnv:
    data = json.loads(path.read_text(encoding="utf-8"))
    env = GoldenEnv()
    env.segments = {name: parse_segment(name, doc) for name, doc in data.get("segments", {}).items()}
    env.holdouts = tuple(s for s in env.segments.values() if s.holdout)
    flags = {name: parse_flag(name, doc) for name, doc in data["flags"].items()}
    env.flags = {name: flag.linked(env) for name, flag in flags.items()}
    return env


def _cases() -> list[Any]:
    out = []
    for path in GOLDEN_FILES:
        data = json.loads(path.read_text(encoding="utf-8"))
        stem = f"env-{path.stem}" if path.parent.name == "env" else path.stem
        linked = path if "segments" in data else None
        for i, case in enumerate(data["cases"]):
            doc = data["flags"][case["flag"]]
            out.append(pytest.param(case["flag"], doc, case, linked, id=f"{stem}-{i}-{case['flag']}"))
    return out


@pytest.mark.parametrize(("name", "document", "case", "linked"), _cases())
def test_golden(name: str, document: Any, case: dict[str, Any], linked: Path | None) -> None:
    flag = parse_flag(name, document) if linked is None else _env(linked).flags[name]
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
    # OVERRIDE comes from the client's override layer, never from the evaluator.
    assert seen == {r.value for r in Reason} - {Reason.UNKNOWN_FLAG.value, Reason.OVERRIDE.value}


def test_every_golden_flag_is_used() -> None:
    for path in GOLDEN_FILES:
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


SINGLE_CHECK_FLAGS = [
    {"users": ["alice", "42"]},
    {"admin": True},
    {"groups": ["beta", "staff"]},
    {"loggedin": True},
    {"loggedout": True},
    {"url": "try"},
    {"url": {"try": "b"}},
    {"regex": "^4"},
    {"subreddits": ["aww"]},
    {"subdomains": ["beta"]},
    {"oauth_clients": ["abc"]},
    {"rules": [{"attribute": "plan", "op": "eq", "value": "pro"}]},
    {
        "rules": [
            {"attribute": "plan", "op": "eq", "value": "pro"},
            {"attribute": "n", "op": "gt", "value": 3},
        ]
    },
    {"percentage": 50},
    {"percent_loggedin": 50},
    {"percent_loggedout": 50},
    {"experiment": {"loggedin": True, "variants": {"a": 30}}},
    {"everyone": True},
]

contexts = st.builds(
    Context,
    user_id=st.one_of(st.none(), st.sampled_from(["42", "alice", "7", "u1"])),
    user_name=st.one_of(st.none(), st.sampled_from(["Alice", "bob"])),
    groups=st.frozensets(st.sampled_from(["beta", "staff", "admin"])),
    cookie_id=st.one_of(st.none(), st.sampled_from(["c1", "c2"])),
    features=st.lists(st.sampled_from(["try", "x"]), max_size=2).map(tuple),
    location=st.one_of(st.none(), st.just("aww")),
    subdomain=st.one_of(st.none(), st.just("beta")),
    oauth_client=st.one_of(st.none(), st.just("abc")),
    attributes=st.fixed_dictionaries({"plan": st.sampled_from(["pro", "free"]), "n": st.integers(0, 5)}),
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SINGLE_CHECK_FLAGS), contexts)
def test_single_check_flags_compile_like_chains(document: dict[str, object], ctx: Context) -> None:
    # A flag with one check is compiled to answer "default" itself (a fast path);
    # adding a selector that never matches forces the general chain. Same answers.
    alone = evaluate(parse_flag("f", document), ctx)
    never = "oauth_clients" if "subdomains" in document else "subdomains"
    chained_flag = parse_flag("f", {never: ["__nobody__"], **document})
    assert chained_flag.run is not chained_flag.constant
    chained = evaluate(chained_flag, ctx)
    assert alone == chained


def test_paused_experiment_leaves_the_percentage_working() -> None:
    doc = {"percentage": 100, "experiment": {"loggedin": True, "enabled": False, "variants": {"a": 10}}}
    decision = evaluate(parse_flag("f", doc), Context(user_id="u"))
    assert (decision.enabled, decision.reason) == (True, Reason.PERCENTAGE)
    doc = {"percentage": 50, "experiment": {"enabled": False, "variants": {"a": 10}}}
    flag = parse_flag("f", doc)
    assert any(evaluate(flag, Context(user_id=f"u{i}")).enabled for i in range(20))


# --------------------------------------------------------------------------- a reference evaluator

FRAGMENTS: list[dict[str, Any]] = [
    *SINGLE_CHECK_FLAGS,
    {"experiment": {"everyone": True, "enabled": False, "variants": {"a": 30}}},
    {"experiment": {"users": ["alice"], "url": "try", "variants": {"a": 25, "b": 5}}},
    {"percentage": 0},
    {"percentage": 100},
    {"admin": False},
    {"enabled": "on"},
    {"enabled": "off"},
    {"enabled": True},
    {"variants": ["x", "y", "z"]},
    {"bucket_by": "cookie"},
]


def _reference(doc: dict[str, Any], ctx: Context) -> tuple[bool, str | None, str]:
    """docs/flags.md's evaluation order, written plainly and slowly."""
    import re

    from flagstaff.bucketing import BucketingMode, flagstaff_hash, in_percentage, variant_for

    if doc.get("enabled") in ("off", False):
        return False, None, "off"

    def forced() -> tuple[bool, str | None, str] | None:
        url = doc.get("url")
        if isinstance(url, dict):
            for value in ctx.features:
                if value in url:
                    return url[value] not in ("control_1", "control_2"), url[value], "forced"
        return None

    def selects(d: dict[str, Any]) -> bool:
        name = (ctx.user_name or "").lower()
        return any(
            [
                d.get("everyone") is True,
                isinstance(d.get("url"), str) and d["url"] in ctx.features,
                any(d.get(g) is True and g in ctx.groups for g in ("admin", "employee", "gold", "beta")),
                bool(set(d.get("groups", ())) & ctx.groups),
                d.get("loggedin") is True and bool(ctx.logged_in),
                d.get("loggedout") is True and not ctx.logged_in,
                ctx.user_id in d.get("users", ()) or name in [u.lower() for u in d.get("users", ())],
                "regex" in d and ctx.user_id is not None and re.search(d["regex"], ctx.user_id) is not None,
                (ctx.location or "").lower() in [s.lower() for s in d.get("subreddits", ())],
                (ctx.subdomain or "").lower() in [s.lower() for s in d.get("subdomains", ())],
                ctx.oauth_client in d.get("oauth_clients", ()),
                any(
                    (r["op"] == "eq" and ctx.attributes.get(r["attribute"]) == r["value"])
                    or (r["op"] == "gt" and ctx.attributes.get(r["attribute"], -1) > r["value"])
                    for r in d.get("rules", ())
                ),
            ]
        )

    def decide() -> tuple[bool, str | None, str]:
        hit = forced()
        if hit is not None:
            return hit
        if doc.get("enabled") == "on":
            return True, None, "on"
        if selects(doc):
            return True, None, "target"
        by_cookie = doc.get("bucket_by") == "cookie"
        for key in ("percentage", "percent_loggedin", "percent_loggedout"):
            if key not in doc:
                continue
            if key == "percentage":
                bid = ctx.cookie_id if by_cookie else (ctx.user_id or ctx.cookie_id)
            elif key == "percent_loggedin":
                bid = ctx.user_id if ctx.logged_in else None
            else:
                bid = None if ctx.logged_in else ctx.cookie_id
            if doc[key] >= 100 and key == "percentage":
                return True, None, "percentage"
            if bid is not None and in_percentage(BucketingMode.FLAGSTAFF, "f", bid, doc[key]):
                return True, None, "percentage"
        exp = doc.get("experiment")
        if exp is not None and exp.get("enabled", True) and selects(exp):
            seed = ctx.user_id if ctx.logged_in and ctx.user_id else ctx.cookie_id
            if seed is None:
                return False, None, "excluded"
            pool = {"control_1": 10.0, "control_2": 10.0, **exp["variants"]}
            v = variant_for(BucketingMode.FLAGSTAFF, "f", seed, list(pool), list(pool.values()))
            if v is None:
                return False, None, "excluded"
            return (
                v not in ("control_1", "control_2"),
                v,
                "control" if v.startswith("control") else "experiment",
            )
        return False, None, "default"

    enabled, variant, reason = decide()
    if enabled and variant is None and "variants" in doc:
        seed = ctx.user_id or ctx.cookie_id
        if seed is not None:
            names = sorted(doc["variants"])
            variant = names[flagstaff_hash("f\x00variant", seed) % len(names)]
    return enabled, variant, reason


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4), contexts)
def test_compiled_flags_agree_with_a_reference_evaluator(
    fragments: list[dict[str, Any]], ctx: Context
) -> None:
    doc: dict[str, Any] = {}
    for fragment in fragments:
        doc.update(fragment)
    if "variants" in doc and "experiment" in doc:
        del doc["variants"]
    decision = evaluate(parse_flag("f", doc), ctx)
    assert (decision.enabled, decision.variant, decision.reason.value) == _reference(doc, ctx)


def test_documents_without_the_new_keys_are_compiled_as_before() -> None:
    # Only a running experiment reads the snapshot (its holdouts); linked to the empty
    # env it is today's experiment check. Nothing else is linked, required or held out.
    for path in sorted(GOLDEN.glob("*.json")):
        if path.stem == "targeting":
            continue
        for name, doc in json.loads(path.read_text(encoding="utf-8"))["flags"].items():
            flag = parse_flag(name, doc)
            assert (flag.requires, flag.segments, flag.denies) == ((), frozenset(), False), name
            assert flag.needs_env is flag.experiments, name
            if flag.needs_env:
                assert isinstance(doc, dict) and "experiment" in doc, name


def test_a_bare_id_or_user_id_dict_gets_the_shared_context_of_that_id() -> None:
    first = to_context("user-shared-1")
    assert to_context("user-shared-1") is first  # a request's second check builds nothing
    assert to_context({"user_id": "user-shared-1"}) is first
    assert first == Context(user_id="user-shared-1") and first.user_key == b"user-shared-1"
    # Other shapes still go through the full build, with its normalisation.
    assert to_context({"user_id": 7}) == Context(user_id="7")
    assert to_context({"id": "a", "plan": "pro"}).attribute("plan") == "pro"
    assert to_context({"user_id": ""}).user_id is None and to_context("").bucket_key() is None
    assert to_context(7) is to_context("7")


def test_the_shared_context_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from flagstaff import context as context_module

    monkeypatch.setattr(context_module, "_BY_ID_LIMIT", 10)
    context_module._BY_ID.clear()
    for i in range(35):
        assert to_context(f"bounded-{i}").user_id == f"bounded-{i}"
        assert len(context_module._BY_ID) <= 10


def test_an_id_with_a_lone_surrogate_still_makes_a_context() -> None:
    ctx = Context(user_id="u\ud800", cookie_id="c\udfff")
    assert ctx.user_key == b"u\xed\xa0\x80" and ctx.cookie_key == b"c\xed\xbf\xbf"
    decision = evaluate(parse_flag("pct", {"percentage": 50}), ctx)
    assert decision.reason is not Reason.ERROR
