"""Segments: parsing, membership, and flags that use them through a linked snapshot (issue 14)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from flagstaff import Context, Decision, Reason, ValidationError, evaluate, parse_flag
from flagstaff.bucketing import BucketingMode, in_percentage
from flagstaff.model import EMPTY_ENV, Flag, references
from flagstaff.segments import Segment, parse_segment, parse_segment_text


@dataclass
class Env:
    flags: dict[str, Flag] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    holdouts: tuple[Segment, ...] = ()


def env_of(**segments: dict[str, Any]) -> Env:
    parsed = {name: parse_segment(name, doc) for name, doc in segments.items()}
    return Env(segments=parsed, holdouts=tuple(s for s in parsed.values() if s.holdout))


def problems(name: str, document: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        parse_segment(name, document)
    return [(p.path, p.message) for p in info.value.problems]


# --------------------------------------------------------------------------- parsing


def test_a_segment_document() -> None:
    seg = parse_segment(
        "segment:staff",
        {
            "description": "Internal staff",
            "owner": "it",
            "tags": ["t"],
            "users": ["alice", 42],
            "holdout": False,
        },
    )
    assert (seg.name, seg.description, seg.owner, seg.tags, seg.holdout) == (
        "staff",
        "Internal staff",
        "it",
        ("t",),
        False,
    )
    assert seg.value["users"] == ["alice", 42]
    assert parse_segment("staff", {"users": ["alice", 42]}).contains(Context(user_id="42"))


def test_parse_segment_text() -> None:
    seg = parse_segment_text("segment:s", b'{"groups": ["employee"], "holdout": true}')
    assert seg.holdout and seg.contains(Context(groups=frozenset({"employee"})))
    with pytest.raises(ValidationError, match="not JSON"):
        parse_segment_text("s", "{nope")


@pytest.mark.parametrize(
    ("name", "document", "path", "says"),
    [
        ("bad name", {}, "name", "'bad name' is not a valid segment name"),
        ("segment:a:b", {}, "name", "'a:b' is not a valid segment name"),
        ("-x", {}, "name", "starting with a letter or digit"),
        ("s", "on", "", "a segment must be an object"),
        ("s", [], "", "a segment must be an object"),
        ("s", {"user": ["a"]}, "user", "unknown key; did you mean 'users'?"),
        ("s", {"exclude": ["a"]}, "exclude", "did you mean 'exclude_users'?"),
        ("s", {"users": "a"}, "users", "must be a list of strings"),
        ("s", {"groups": [True]}, "groups", "must be a list of strings"),
        ("s", {"rules": []}, "rules", "must be a non-empty list of rules"),
        (
            "s",
            {"rules": [{"attribute": "a", "op": "eqq", "value": 1}]},
            "rules[0].op",
            'unknown operator "eqq"',
        ),
        ("s", {"percentage": 101}, "percentage", "between 0 and 100, not 101"),
        ("s", {"percentage": True}, "percentage", "between 0 and 100, not true"),
        ("s", {"salt": ""}, "salt", "must be a non-empty string"),
        ("s", {"bucket_by": []}, "bucket_by", "must be 'user'"),
        ("s", {"holdout": 1}, "holdout", "must be true"),
        ("s", {"description": 5}, "description", "must be a string"),
    ],
)
def test_bad_segments_name_the_field(name: str, document: Any, path: str, says: str) -> None:
    found = problems(name, document)
    assert any(p == path and says in m for p, m in found), found


def test_membership() -> None:
    seg = parse_segment(
        "s",
        {
            "users": ["alice"],
            "groups": ["employee"],
            "rules": [{"attribute": "email", "op": "ends_with", "value": "@example.com"}],
            "exclude_users": ["eve"],
        },
    )
    assert seg.contains(Context(user_id="alice"))
    assert seg.contains(Context(user_id="x", user_name="ALICE"))
    assert seg.contains(Context(user_id="x", groups=frozenset({"employee"})))
    assert seg.contains(Context(user_id="x", attributes={"email": "x@example.com"}))
    assert not seg.contains(Context(user_id="eve", groups=frozenset({"employee"})))
    assert not seg.contains(Context(user_id="x"))
    assert not seg.contains(Context())
    assert not parse_segment("empty", {}).contains(Context(user_id="alice"))


def test_a_segment_percentage_is_salted_with_its_name() -> None:
    seg = parse_segment("slice", {"percentage": 20})
    salted = parse_segment("slice", {"percentage": 20, "salt": "other"})
    by_org = parse_segment("slice", {"percentage": 20, "bucket_by": "org"})
    for i in range(1000):
        uid = f"id-{i}"
        assert seg.contains(Context(user_id=uid)) is in_percentage(
            BucketingMode.FLAGSTAFF, "segment:slice", uid, 20
        )
        assert salted.contains(Context(user_id=uid)) is in_percentage(
            BucketingMode.FLAGSTAFF, "other", uid, 20
        )
        expect = in_percentage(BucketingMode.FLAGSTAFF, "segment:slice", uid, 20)
        assert by_org.contains(Context(user_id="u", attributes={"org": uid})) is expect
    assert not by_org.contains(Context(user_id="u"))
    assert parse_segment("all", {"percentage": 100}).contains(Context())


# --------------------------------------------------------------------------- in flags


def test_a_flag_naming_nothing_is_not_linked() -> None:
    flag = parse_flag("f", {"users": ["a"], "percentage": 5})
    assert flag.link is None and not flag.needs_env
    assert flag.linked(env_of(staff={"users": ["a"]})) is flag
    assert (flag.requires, flag.segments, flag.experiments) == ((), frozenset(), False)


def test_segments_in_targeting_read_the_env() -> None:
    doc = {
        "targeting": [
            {"segments": ["staff", "contractors"], "serve": {"variant": "inside"}},
            {"not_segments": ["staff"], "groups": ["beta"], "serve": "on"},
        ]
    }
    flag = parse_flag("f", doc)
    assert flag.needs_env and flag.constant is None
    assert flag.segments == frozenset({"staff", "contractors"})
    alice = Context(user_id="alice", groups=frozenset({"beta"}))
    # Unlinked (EMPTY_ENV): a segment has no member; not_segments holds.
    assert evaluate(flag, alice).rule == "targeting[1]"
    linked = flag.linked(env_of(staff={"users": ["alice"]}))
    assert evaluate(linked, alice) == Decision("f", True, Reason.RULE, variant="inside", rule="targeting[0]")
    assert evaluate(linked, Context(user_id="bob", groups=frozenset({"beta"}))).rule == "targeting[1]"
    both = flag.linked(env_of(staff={"users": ["x"]}, contractors={"users": ["alice"]}))
    assert evaluate(both, alice).variant == "inside"
    # The original flag is untouched by linking.
    assert evaluate(flag, alice).rule == "targeting[1]"


def test_deny_segments() -> None:
    flag = parse_flag("f", {"enabled": "on", "deny": {"users": ["u"], "segments": ["fraud"]}})
    assert flag.segments == frozenset({"fraud"}) and flag.denies
    linked = flag.linked(env_of(fraud={"rules": [{"attribute": "risk", "op": "gt", "value": 80}]}))
    assert evaluate(linked, Context(user_id="x", attributes={"risk": 99})) == Decision(
        "f", False, Reason.DENIED, rule="deny.segments"
    )
    assert evaluate(linked, Context(user_id="u", attributes={"risk": 99})).rule == "deny.users"
    assert evaluate(linked, Context(user_id="x")).reason is Reason.ON
    assert evaluate(flag, Context(user_id="x", attributes={"risk": 99})).reason is Reason.ON


def test_a_segment_change_reaches_the_flag_through_relinking() -> None:
    flag = parse_flag("f", {"targeting": [{"segments": ["beta-testers"], "serve": "on"}]})
    ctx = Context(user_id="carol")
    assert not evaluate(flag.linked(env_of(**{"beta-testers": {"users": ["alice"]}})), ctx).enabled
    assert evaluate(flag.linked(env_of(**{"beta-testers": {"users": ["alice", "carol"]}})), ctx).enabled


def test_linked_keeps_every_field_but_run() -> None:
    flag = parse_flag("f", {"targeting": [{"segments": ["s"], "serve": "on"}], "values": {"on": 1}})
    linked = flag.linked(EMPTY_ENV)
    assert linked == flag  # run is not compared
    assert linked.run is not flag.run
    assert linked.values == {"on": 1} and linked.link is flag.link


def test_references_name_where_each_document_is_named() -> None:
    flag = parse_flag(
        "f",
        {
            "deny": {"segments": ["fraud"]},
            "prerequisites": ["a", {"flag": "b", "variant": "x"}],
            "targeting": [
                {"serve": "on"},
                {"segments": ["s1"], "not_segments": ["s2", "s1"], "serve": "off"},
            ],
        },
    )
    assert [(r.kind, r.name, r.path) for r in references(flag)] == [
        ("segment", "fraud", "deny.segments[0]"),
        ("flag", "a", "prerequisites[0]"),
        ("flag", "b", "prerequisites[1]"),
        ("segment", "s1", "targeting[1].segments[0]"),
        ("segment", "s2", "targeting[1].not_segments[0]"),
        ("segment", "s1", "targeting[1].not_segments[1]"),
    ]
    assert {r.name for r in references(flag) if r.kind == "segment"} == flag.segments
    assert tuple(r.name for r in references(flag) if r.kind == "flag") == flag.requires
    assert references(parse_flag("g", 50)) == ()
