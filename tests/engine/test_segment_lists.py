"""Segment user and group lists: strings (the fast path), numeric ids, and refusals."""

from __future__ import annotations

import pytest

from flagstaff import Context, ValidationError
from flagstaff.segments import parse_segment


def test_string_users_match_by_id_or_name_case_insensitively() -> None:
    segment = parse_segment("s", {"users": ["Alice", "u2"], "exclude_users": ["u3"]})
    assert segment.contains(Context(user_id="u2"))
    assert segment.contains(Context(user_id="x", user_name="alice"))
    assert not segment.contains(Context(user_id="u3"))


def test_numeric_ids_are_their_decimal_text() -> None:
    segment = parse_segment("s", {"users": [42, "u2"], "groups": [7]})
    assert segment.contains(Context(user_id="42"))
    assert segment.contains(Context(user_id="x", groups=frozenset({"7"})))


@pytest.mark.parametrize("users", [[True], ["a", None], ["a", 1.5], [["a"]]])
def test_other_members_are_refused(users: list[object]) -> None:
    with pytest.raises(ValidationError, match="must be a list of strings"):
        parse_segment("s", {"users": users})


def test_lower_case_ids_still_match_a_name_in_any_case() -> None:
    segment = parse_segment("s", {"users": ["alice", "u2"]})
    assert segment.contains(Context(user_id="x", user_name="ALICE"))
    assert segment.contains(Context(user_id="u2"))
    assert not segment.contains(Context(user_id="U2"))  # an id matches exactly
