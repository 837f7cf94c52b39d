"""Flag.linked copies every field but ``run`` and ``quick`` (a copier generated from the slots)."""

from __future__ import annotations

from dataclasses import fields

from flagstaff import Context
from flagstaff.model import EMPTY_ENV, Flag, parse_flag
from flagstaff.segments import parse_segment
from flagstaff.snapshot import Snapshot


def test_linked_copies_every_field_but_run() -> None:
    flag = parse_flag(
        "f",
        {
            "description": "d",
            "tags": ["t"],
            "percentage": 5,
            "targeting": [{"segments": ["s"], "serve": {"variant": "big"}}],
            "values": {"big": 3},
        },
    )
    segment = parse_segment("s", {"users": ["u1"]})
    linked = Snapshot({"f": flag}, 1, 0.0, {"s": segment}).flags["f"]
    assert type(linked) is Flag and linked is not flag
    for f in fields(Flag):
        if f.name not in ("run", "quick"):
            assert getattr(linked, f.name) is getattr(flag, f.name), f.name
    assert linked.run is not flag.run
    assert linked.quick is linked.run  # the fast path serves the linked run
    assert linked.run(Context(user_id="u1")).variant == "big"
    assert flag.run(Context(user_id="u1")).variant is None  # the original is untouched


def test_a_flag_without_link_is_its_own_linked_copy() -> None:
    flag = parse_flag("plain", {"percentage": 5})
    assert flag.linked(EMPTY_ENV) is flag


def test_the_parser_builds_the_flag_its_init_would() -> None:
    for document in ({"percentage": 5, "tags": ["a"]}, {"enabled": "on", "deny": {"users": ["u"]}}, "off"):
        flag = parse_flag("f", document)
        again = Flag(**{f.name: getattr(flag, f.name) for f in fields(Flag)})
        assert type(flag) is Flag and again == flag
        for f in fields(Flag):
            assert getattr(flag, f.name) is getattr(again, f.name), f.name
