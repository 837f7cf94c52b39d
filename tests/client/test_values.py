"""Values through the client: ``value``, ``value_details`` and the typed getters, which
return the caller's default and say why instead of raising; the client's segments.

Flags with ``values`` are built by hand here (``parse_flag`` plus ``values`` given with
``dataclasses.replace``) and put in the client's snapshot, so these tests need nothing
from the engine's parsing of the ``values`` key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import flagstaff
from flagstaff import Context, Decision, Reason, ValueDetails
from flagstaff.aio import AsyncClient
from flagstaff.client import Client, SnapshotChange
from flagstaff.evaluate import evaluate
from flagstaff.model import EMPTY_ENV, Env, Flag, parse_flag
from flagstaff.segments import Segment
from flagstaff.snapshot import Snapshot
from flagstaff.stores.memory import MemoryStore
from flagstaff.testing import wait_until
from tests._support.client import unique_memory_url

pytestmark = pytest.mark.timeout(60)

BETA = Context(user_id="alice", groups=frozenset({"beta"}))
OTHER = Context(user_id="bob")


def valued(name: str, document: Any, values: dict[str, Any]) -> Flag:
    return dataclasses.replace(parse_flag(name, document), values=values)


FLAGS = {
    "limits": valued("limits", {"groups": ["beta"]}, {"on": {"max_items": 20}, "off": {"max_items": 10}}),
    "count": valued("count", "on", {"on": 7}),
    "ratio": valued("ratio", "on", {"on": 0.25}),
    "label": valued("label", "on", {"on": "big"}),
    "flag_true": valued("flag_true", "on", {"on": True}),
    "colour": parse_flag("colour", {"enabled": "on", "variants": ["blue"]}),
    "plain": parse_flag("plain", {"groups": ["beta"]}),
    "nothing": valued("nothing", "on", {"on": None}),
}


@pytest.fixture
def client() -> Iterator[Client]:
    store = MemoryStore.from_url(unique_memory_url())
    c = flagstaff.connect(store.url, timeout=5)
    snap = c.snapshot
    # Hand-built flags (values set directly): in the snapshot, as the follower would hold them.
    c.follower._snapshot = Snapshot(FLAGS, snap.revision, snap.loaded_at)
    yield c
    c.close()
    store.close()


def test_value_is_the_value_of_the_decision(client: Client) -> None:
    assert client.value("limits", BETA) == {"max_items": 20}
    assert client.value("limits", OTHER) == {"max_items": 10}
    assert client.value("count", OTHER) == 7
    # No values: the variant's name, else whether it is on.
    assert client.value("colour", BETA) == "blue"
    assert client.value("plain", BETA) is True and client.value("plain", OTHER) is False


def test_value_details_carry_the_decision(client: Client) -> None:
    details = client.value_details("limits", BETA, {"max_items": 1})
    assert details == ValueDetails({"max_items": 20}, client.evaluate("limits", BETA), None)
    assert details.decision.reason is Reason.TARGET and not details.defaulted


def test_an_unknown_flag_gives_the_default_and_says_why(client: Client) -> None:
    details = client.value_details("nope", BETA, 3)
    assert details.value == 3 and details.defaulted
    assert details.error == "no flag named 'nope'"
    assert details.decision.reason is Reason.UNKNOWN_FLAG
    assert client.get_int("nope", BETA, 5) == 5
    assert client.value_errors["nope"] == "no flag named 'nope'"


def test_an_evaluation_error_gives_the_default_and_says_why(client: Client) -> None:
    details = client.value_details("limits", object(), "fallback")  # type: ignore[arg-type]
    assert details.value == "fallback"
    assert details.decision.reason is Reason.ERROR
    assert details.error is not None and details.error.startswith("bad context: cannot use object")

    def boom(ctx: Context) -> Decision:
        raise ZeroDivisionError("compiled check failed")

    snap = client.snapshot
    client.follower._snapshot = snap.with_flag(
        dataclasses.replace(FLAGS["limits"], run=boom), snap.revision, snap.loaded_at
    )
    details = client.value_details("limits", BETA, {"max_items": 1})
    assert details.value == {"max_items": 1}
    assert details.error == "ZeroDivisionError: compiled check failed"


@pytest.mark.parametrize(
    ("getter", "name", "default", "want", "error"),
    [
        ("get_int", "count", 0, 7, None),
        ("get_int", "label", 0, 0, "expected int, got str"),
        ("get_int", "flag_true", 0, 0, "expected int, got bool"),  # a bool is never an int
        ("get_int", "ratio", 1, 1, "expected int, got float"),
        ("get_float", "ratio", 0.0, 0.25, None),
        ("get_float", "count", 0.0, 7.0, None),  # an int is a float
        ("get_float", "flag_true", 0.5, 0.5, "expected float, got bool"),
        ("get_str", "label", "", "big", None),
        ("get_str", "colour", "", "blue", None),
        ("get_str", "count", "none", "none", "expected str, got int"),
        ("get_bool", "flag_true", False, True, None),
        ("get_bool", "plain", True, True, None),
        ("get_bool", "count", False, False, "expected bool, got int"),
        ("get_bool", "nothing", True, True, "expected bool, got null"),
        ("get_dict", "limits", None, {"max_items": 20}, None),
        ("get_dict", "label", {"k": 1}, {"k": 1}, "expected dict, got str"),
    ],
)
def test_typed_getters_return_the_default_on_a_mismatch_and_record_why(
    client: Client, getter: str, name: str, default: Any, want: Any, error: str | None
) -> None:
    got = getattr(client, getter)(name, BETA, default)
    assert got == want and type(got) is type(want)
    assert client.value_errors.get(name) == error
    expect = {"get_int": int, "get_float": float, "get_str": str, "get_bool": bool, "get_dict": dict}[getter]
    assert client.value_details(name, BETA, default, expect=expect).error == error


def test_a_mismatch_is_logged_once_per_reason(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "flagstaff.client"):
        for _ in range(5):
            client.get_int("label", BETA, 0)
        client.get_float("label", BETA, 0.0)
    lines = [r.getMessage() for r in caplog.records if "label" in r.getMessage()]
    assert lines == [
        "flag 'label': returning the caller's default: expected int, got str",
        "flag 'label': returning the caller's default: expected float, got str",
    ]


def test_a_json_value_is_a_fresh_copy(client: Client) -> None:
    first = client.get_dict("limits", BETA)
    first["max_items"] = 999
    assert client.get_dict("limits", BETA) == {"max_items": 20}
    value = client.value("limits", BETA)
    value["max_items"] = 0
    assert client.value("limits", BETA) == {"max_items": 20}
    default = {"a": 1}
    got = client.get_dict("nope", BETA, default)
    got["a"] = 2
    assert default == {"a": 1}


def test_values_are_counted_as_evaluations(client: Client) -> None:
    before = client.evaluations
    client.value("count", BETA)
    client.get_int("nope", BETA)
    after = client.evaluations
    assert after.total - before.total == 2 and after.unknown - before.unknown == 1


def test_values_in_a_scope_come_from_the_pinned_snapshot(client: Client) -> None:
    with client.scope(BETA):
        snap = client.snapshot
        client.follower._snapshot = snap.with_flag(
            valued("count", "on", {"on": 8}), snap.revision + 1, snap.loaded_at
        )
        assert client.get_int("count") == 7  # the scope's snapshot
    assert client.get_int("count", BETA) == 8


def test_the_async_client_has_the_same_values(client: Client) -> None:
    async def main() -> None:
        aclient = AsyncClient(client)
        assert aclient.value("limits", BETA) == {"max_items": 20}
        assert aclient.get_int("count", BETA) == 7
        assert aclient.get_float("count", BETA) == 7.0
        assert aclient.get_str("label", BETA) == "big"
        assert aclient.get_bool("flag_true", BETA) is True
        assert aclient.get_dict("limits", OTHER) == {"max_items": 10}
        assert aclient.value_details("nope", BETA, 1).error == "no flag named 'nope'"
        assert aclient.segments is client.segments

    asyncio.run(main())


# ---------------------------------------------------------------- segments and all()


def _linked_to(segment_name: str) -> Flag:
    """A flag on for the members of ``segment_name`` (hand-linked, as the engine would)."""

    def link(env: Env) -> Any:
        def run(ctx: Context) -> Decision:
            found = env.segments.get(segment_name)
            if found is not None and found.contains(ctx):
                return Decision("staff_only", True, Reason.RULE, rule="targeting[0]")
            return Decision("staff_only", False, Reason.DEFAULT)

        return run

    base = parse_flag("staff_only", {"everyone": True})
    return dataclasses.replace(
        base, segments=frozenset({segment_name}), link=link, run=link(EMPTY_ENV), constant=None
    )


def test_segments_and_all_see_the_linked_snapshot(client: Client) -> None:
    staff = Segment(name="staff", document="{}", contains=lambda ctx: ctx.user_id == "alice")
    snap = client.snapshot
    client.follower._snapshot = Snapshot(
        {**snap.flags, "staff_only": _linked_to("staff")}, snap.revision, snap.loaded_at, {"staff": staff}
    )
    assert client.segments == {"staff": staff}
    with pytest.raises(TypeError):
        client.segments["x"] = staff  # type: ignore[index]
    everything = client.all(BETA)
    assert set(everything) == set(FLAGS) | {"staff_only"}
    assert everything["staff_only"].enabled and not client.all(OTHER)["staff_only"].enabled
    assert client.is_enabled("staff_only", BETA)


def test_an_override_replaces_a_linked_flag(client: Client) -> None:
    from flagstaff.overrides import compile_overrides

    staff = Segment(name="staff", document="{}", contains=lambda ctx: True)
    client.follower._snapshot = Snapshot({"staff_only": _linked_to("staff")}, 1, 0.0, {"staff": staff})
    assert client.is_enabled("staff_only", BETA)
    client.set_overrides(compile_overrides({"staff_only": "off"}, "--flag"))
    assert client.evaluate("staff_only", BETA) == Decision(
        "staff_only", False, Reason.OVERRIDE, rule="--flag"
    )
    assert client.value_details("staff_only", BETA, "x").value is False
    client.set_overrides({})
    assert client.is_enabled("staff_only", BETA)


def test_an_override_that_names_a_segment_is_linked_and_stays_tagged(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flagstaff import overrides

    def staff(*members: str) -> Segment:
        return Segment(name="staff", document="{}", contains=lambda ctx: ctx.user_id in members)

    client.follower._snapshot = Snapshot({}, 1, 0.0, {"staff": staff("alice")})
    # The override's document names a segment: stand in a hand-linked flag for its parse.
    monkeypatch.setattr(overrides, "parse_flag", lambda name, document: _linked_to("staff"))
    client.set_overrides(overrides.compile_overrides({"staff_only": {"ignored": True}}, "--flag"))
    assert client.evaluate("staff_only", BETA) == Decision("staff_only", True, Reason.OVERRIDE, rule="--flag")
    assert not client.evaluate("staff_only", OTHER).enabled
    # A segment change reaches the override too (linked again after the change).
    snap = client.snapshot
    client.follower._snapshot = snap.with_segment(staff("bob"), 2, 0.0)
    client.follower.publish(SnapshotChange(frozenset({"segment:staff"}), 2))
    wait_until(lambda: client.is_enabled("staff_only", OTHER), message="the override was not linked again")
    assert client.evaluate("staff_only", OTHER).reason is Reason.OVERRIDE
    assert not client.is_enabled("staff_only", BETA)


def _requiring(name: str, required: str) -> Flag:
    """A flag on when ``required`` is on (hand-linked, as the engine would)."""

    def link(env: Env) -> Any:
        def run(ctx: Context) -> Decision:
            prerequisite = env.flags.get(required)
            if prerequisite is None or not evaluate(prerequisite, ctx).enabled:
                return Decision(name, False, Reason.PREREQUISITE, rule=required)
            return Decision(name, True, Reason.ON)

        return run

    base = parse_flag(name, {"everyone": True})
    return dataclasses.replace(base, requires=(required,), link=link, run=link(EMPTY_ENV), constant=None)


def test_an_override_reaches_the_flags_that_require_it(client: Client) -> None:
    from flagstaff.overrides import compile_overrides

    flags = {
        "base": parse_flag("base", "on"),
        "v2": _requiring("v2", "base"),
        "v3": _requiring("v3", "v2"),
        "other": parse_flag("other", "on"),
    }
    client.follower._snapshot = Snapshot(flags, 1, 0.0)
    assert client.is_enabled("v3", BETA)
    changes: list[SnapshotChange] = []
    client.on_change(changes.append)
    client.set_overrides(compile_overrides({"base": "off"}, "--flag"))
    assert set(client.overrides) == {"base"}  # what was asked for, not what it reaches
    assert client.evaluate("base", BETA).reason is Reason.OVERRIDE
    assert client.evaluate("v2", BETA) == Decision("v2", False, Reason.PREREQUISITE, rule="base")
    assert client.evaluate("v3", BETA) == Decision("v3", False, Reason.PREREQUISITE, rule="v2")
    assert client.all(BETA)["v3"].reason is Reason.PREREQUISITE
    with client.scope(BETA):
        assert not client.is_enabled("v2")
    assert evaluate(client.snapshot.flags["v2"], BETA).enabled  # the store's view is untouched
    wait_until(lambda: changes)
    assert changes[0].names == {"base", "v2", "v3"}
    # A store change afterwards (v2 now requires "other"): the overlay is linked again,
    # and v2, no longer requiring the overridden flag, is the store's again.
    snap = client.snapshot
    client.follower._snapshot = snap.with_flag(_requiring("v2", "other"), 2, 0.0)
    client.follower.publish(SnapshotChange(frozenset({"v2", "v3"}), 2))
    wait_until(lambda: client.is_enabled("v2", BETA), message="the overrides were not linked again")
    assert client.is_enabled("v3", BETA)
    assert not client.is_enabled("base", BETA)
    client.set_overrides({})
    assert client.is_enabled("v2", BETA) and client.is_enabled("v3", BETA)
