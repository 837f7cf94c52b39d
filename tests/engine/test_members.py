"""Large member lists (:mod:`flagstaff.members`): the compact set answers exactly as a
frozenset, and flags and segments with long ``users`` lists decide exactly as before."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstaff import Context
from flagstaff.evaluate import evaluate
from flagstaff.members import COMPACT_ABOVE, MemberSet, users_test
from flagstaff.model import parse_flag
from flagstaff.segments import parse_segment

# Short strings from a small alphabet (with case pairs and non-ASCII letters), so that
# probes often hit, lists have duplicates, and names differ from members only by case.
_CHARS = st.sampled_from("aAbBzZ0-_éÉßẞİıΣσς\u00e7\U0001f600")
_TEXT = st.text(_CHARS, max_size=4)
_ANY_TEXT = st.text(max_size=6)  # any code point but surrogates (a Context id is UTF-8)


@given(st.lists(_TEXT | _ANY_TEXT, max_size=60), st.lists(_TEXT | _ANY_TEXT, max_size=30))
def test_membership_is_the_frozensets(members: list[str], probes: list[str]) -> None:
    compact, reference = MemberSet(members), frozenset(members)
    assert len(compact) == len(reference)
    assert set(compact) == reference
    for probe in [*probes, *members]:
        assert (probe in compact) is (probe in reference), probe
        assert compact.has(probe, probe.encode()) is (probe in reference), probe


@given(st.lists(st.text(max_size=3), min_size=1, max_size=40))
def test_lone_surrogates_are_members_like_any_string(members: list[str]) -> None:
    # A JSON document may hold "\ud800"; it must neither break the build nor match its neighbours.
    members = [*members, "\ud800", "a\udfff"]
    compact = MemberSet(members)
    assert "\ud800" in compact and "a\udfff" in compact
    assert "\ud801" not in compact and "a" + "\udffe" not in compact


def test_long_members_carry_longer_length_prefixes() -> None:
    # lengths around the one-byte prefix's limit (127) and far past it, in UTF-8 bytes
    members = ["x" * n for n in (0, 1, 126, 127, 128, 129, 300, 16_383, 16_384, 70_000)] + ["é" * 64]
    members += [f"id-{i}" for i in range(50)]  # neighbours in the same buckets
    compact = MemberSet(members)
    assert set(compact) == set(members)
    for m in members:
        assert m in compact and m + "!" not in compact and m[:-1] + "y" not in compact
    assert "é" * 63 not in compact and "x" * 131 not in compact


def test_every_bucket_collision_is_confirmed_by_the_bytes() -> None:
    # 3,000 members in 4,096 buckets: many buckets hold two or more members, and every
    # probe that lands in one (the misses below land everywhere) is compared byte by byte.
    members = [f"m{i}" for i in range(3_000)]
    compact = MemberSet(members)
    assert all(m in compact for m in members)
    assert not any(f"x{i}" in compact for i in range(20_000))
    assert not any(f"m{i}" in compact for i in range(3_000, 20_000))


def test_it_is_immutable_and_pickles() -> None:
    compact = MemberSet(["a", "b", "é"])
    with pytest.raises(AttributeError, match="immutable"):
        compact._blob = b""
    loaded = pickle.loads(pickle.dumps(compact))
    assert loaded == compact and "é" in loaded and "c" not in loaded


def test_a_million_ids_fit_in_a_fifth_of_a_set() -> None:
    compact = MemberSet(f"user-{i}" for i in range(100_000))
    # blob (~11 bytes an id) + 4-byte offset + 4-byte bucket index, well under the 32 bytes
    # an id the issue allows (a frozenset of str needs ~100).
    assert compact.nbytes < 25 * 100_000


def _reference_users(names: list[str], ctx: Context) -> bool:
    lower = {n.lower() for n in names}
    return ctx.user_id in set(names) or (ctx.user_name is not None and ctx.user_name.lower() in lower)


_CONTEXTS = st.builds(Context, user_id=st.none() | _TEXT | _ANY_TEXT, user_name=st.none() | _TEXT | _ANY_TEXT)


@given(st.lists(_TEXT | _ANY_TEXT, max_size=60), st.lists(_CONTEXTS, max_size=20))
def test_the_users_test_is_id_or_name_case_insensitively(names: list[str], contexts: list[Context]) -> None:
    test = users_test(names)
    for ctx in [
        *contexts,
        *(Context(user_id=n) for n in names),
        *(Context(user_name=n.upper()) for n in names),
    ]:
        assert test(ctx) is _reference_users(names, ctx), ctx


@contextmanager
def _compact_from(threshold: int) -> Iterator[None]:
    """Compile every users list above ``threshold`` compactly (the real switch is COMPACT_ABOVE)."""
    with (
        mock.patch("flagstaff.checks.COMPACT_ABOVE", threshold),
        mock.patch("flagstaff.model.COMPACT_ABOVE", threshold),
        mock.patch("flagstaff.segments.COMPACT_ABOVE", threshold),
    ):
        yield


_NAMES = st.lists(_TEXT | _ANY_TEXT.filter(bool), min_size=1, max_size=30)


@settings(max_examples=60)
@given(_NAMES, _NAMES, st.lists(_CONTEXTS, max_size=15))
def test_flags_and_segments_decide_as_with_frozensets(
    users: list[str], excluded: list[str], contexts: list[Context]
) -> None:
    docs = {
        "selector": {"users": users},
        "rule": {"targeting": [{"users": users, "serve": "on"}]},
        "deny": {"everyone": True, "deny": {"users": excluded}},
    }
    segment = {"users": users, "exclude_users": excluded}
    with _compact_from(10**9):
        flags = {k: parse_flag(k, d) for k, d in docs.items()}
        plain = parse_segment("s", segment)
    with _compact_from(0):
        compact_flags = {k: parse_flag(k, d) for k, d in docs.items()}
        compact = parse_segment("s", segment)
    probes = [
        *contexts,
        *(Context(user_id=u) for u in users),
        *(Context(user_name=u.swapcase()) for u in users),
    ]
    probes += [Context(user_id=u) for u in excluded]
    for ctx in probes:
        assert compact.contains(ctx) is plain.contains(ctx), ctx
        for key, flag in flags.items():
            assert evaluate(compact_flags[key], ctx) == evaluate(flag, ctx), (key, ctx)


def test_a_long_list_in_a_flag_and_a_segment_uses_the_compact_set() -> None:
    users = [f"User-{i}" for i in range(COMPACT_ABOVE + 1)]
    with mock.patch("flagstaff.members.MemberSet", wraps=MemberSet) as built:
        flag = parse_flag("f", {"users": users})
        segment = parse_segment("s", {"users": users, "exclude_users": ["User-7"]})
    # the flag's list and the segment's (each with its folded lower case); the one-member
    # exclude_users list stays a frozenset
    assert built.call_count == 4
    assert evaluate(flag, Context(user_id="User-5")).enabled
    assert evaluate(flag, Context(user_id="x", user_name="user-5")).enabled
    assert not evaluate(flag, Context(user_id="user-5")).enabled  # an id matches exactly
    assert segment.contains(Context(user_id=users[-1]))
    assert not segment.contains(Context(user_id="User-7"))
    assert not segment.contains(Context(user_id=f"User-{COMPACT_ABOVE + 1}"))
