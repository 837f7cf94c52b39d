"""Splitting a large segment into parts and joining them back (:mod:`flagstaff.parts`).

The part size is lowered here (``PART_BYTES`` patched) so that a few hundred ids make
several parts; the stores' tests (tests/stores/test_segment_parts.py) use the real size.
"""

from __future__ import annotations

import json

import pytest

from flagstaff.context import Context
from flagstaff.document import (
    encode_document,
    is_part_key,
    is_segment_key,
    part_key,
    part_owner,
)
from flagstaff.errors import ValidationError
from flagstaff.model import parse_flag
from flagstaff.parts import MAX_NAME_CHARS, PARTS_KEY, expand, join, parse_part, part_digest, split
from flagstaff.segments import parse_segment

SMALL = 2048


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flagstaff.parts.PART_BYTES", SMALL)


def users(n: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


def test_part_keys_are_segment_keys_but_no_segment_name() -> None:
    key = part_key("beta", "0123456789abcdef0123")
    assert key == "segment:beta:part:0123456789abcdef0123"
    assert is_segment_key(key) and is_part_key(key) and part_owner(key) == "beta"
    assert not is_part_key("segment:beta") and not is_part_key("beta:part:x")
    # No one creates a segment whose key reads as a part: ':' is not in a segment name.
    with pytest.raises(ValidationError, match="not a valid segment name"):
        parse_segment("beta:part:0123456789abcdef0123", {"users": ["a"]})


def test_a_small_segment_is_its_own_head() -> None:
    doc = {"users": ["a", "b"], "groups": ["staff"]}
    assert split("beta", doc) == (doc, {})


def test_a_large_segment_splits_into_parts_that_join_back_in_order() -> None:
    members = users(600)
    doc = {"description": "big", "users": members, "exclude_users": ["user-00001"]}
    head, parts = split("beta", doc)
    assert "users" not in head and head["description"] == "big" and head["exclude_users"] == ["user-00001"]
    assert len(parts) == len(head[PARTS_KEY]) >= 3
    for key, text in parts.items():
        assert len(text.encode()) <= SMALL
        assert key == part_key("beta", part_digest(text))
        assert json.loads(text)["part_of"] == "beta"
    joined, problems = join("beta", head[PARTS_KEY], parts)
    assert problems == [] and joined == members
    assert expand("segment:beta", head, parts) == doc
    assert split("beta", doc) == (head, parts)  # the same document, the same parts
    # Compiled with its parts, the head is the segment it was.
    segment = parse_segment("beta", head, parts=parts)
    assert segment.contains(Context(user_id="user-00599"))
    assert not segment.contains(Context(user_id="user-00001"))  # excluded
    assert not segment.contains(Context(user_id="user-00600"))


def test_parts_fill_up_to_the_part_size() -> None:
    head, parts = split("beta", {"users": users(2000)})
    sizes = [len(parts[part_key("beta", d)].encode()) for d in head[PARTS_KEY]]
    assert all(SMALL - 12 < s <= SMALL for s in sizes[:-1])  # an id and its comma are 12 bytes


def test_non_ascii_ids_are_counted_in_bytes() -> None:
    head, parts = split("beta", {"users": [f"ü{i:04d}é" for i in range(800)]})
    assert len(head[PARTS_KEY]) > 1
    assert all(len(t.encode()) <= SMALL for t in parts.values())


def test_a_missing_or_changed_part_is_named() -> None:
    head, parts = split("beta", {"users": users(600)})
    first, second = (part_key("beta", d) for d in head[PARTS_KEY][:2])
    gone = {k: v for k, v in parts.items() if k != first}
    with pytest.raises(ValidationError, match=f"the part '{first}' is missing"):
        parse_segment("beta", head, parts=gone)
    tampered = dict(parts)
    doc = json.loads(parts[second])
    doc["users"].append("intruder")
    tampered[second] = encode_document(doc)
    with pytest.raises(ValidationError, match=r"has the digest .* not .* as its key says"):
        parse_segment("beta", head, parts=tampered)
    with pytest.raises(ValidationError, match="written back only while its parts exist"):
        expand("segment:beta", head, gone)
    with pytest.raises(ValidationError, match="missing"):
        parse_segment("beta", head)  # no parts given: nothing is guessed


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "a part must be an object"),
        ({"part_of": "other", "users": []}, "must be 'beta'"),
        ({"part_of": "beta", "users": [1]}, "must be a list of strings"),
        ({"part_of": "beta", "users": [], "extra": 1}, "unknown key"),
    ],
)
def test_an_invalid_part_is_refused(doc: object, message: str) -> None:
    text = encode_document(doc)
    with pytest.raises(ValidationError, match=message):
        parse_part(part_key("beta", part_digest(text)), text)


def test_a_head_has_users_or_parts_not_both() -> None:
    head, parts = split("beta", {"users": users(600)})
    with pytest.raises(ValidationError, match="not both"):
        parse_segment("beta", {**head, "users": ["a"]}, parts=parts)
    with pytest.raises(ValidationError, match="part digests"):
        parse_segment("beta", {PARTS_KEY: ["not-a-digest"]}, parts=parts)


def test_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flagstaff.parts.MAX_SEGMENT_BYTES", 4096)
    with pytest.raises(ValidationError, match="over the 0 MiB a segment may hold"):
        split("beta", {"users": users(600)})
    monkeypatch.setattr("flagstaff.parts.MAX_SEGMENT_BYTES", 1 << 30)
    long = "s" * (MAX_NAME_CHARS + 1)
    with pytest.raises(ValidationError, match=f"at most {MAX_NAME_CHARS} characters"):
        split(long, {"users": users(600)})
    assert len(part_key("s" * MAX_NAME_CHARS, "0" * 20)) == 200
    with pytest.raises(ValidationError, match="longer than a part"):
        split("beta", {"users": ["x" * 3000]})


def test_a_flag_too_large_points_to_segments() -> None:
    with pytest.raises(ValidationError, match="use a segment for lists this large"):
        parse_flag("big", {"users": users(400_000)})
