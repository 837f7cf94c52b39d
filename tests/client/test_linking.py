"""Linking in the snapshot: each flag bound to the segments and prerequisites of its own
snapshot, a change re-linking only what depends on it, cycles failing without recursion.

The flags here are hand-built (``parse_flag`` plus a ``link`` given with
``dataclasses.replace``), so these tests need nothing from the engine's targeting
code: the link below follows the engine's contract (a missing prerequisite fails
with ``no flag named``, an off one fails, a holdout member sees no experiment, a
missing segment has no member).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from flagstaff import Context, Decision, Reason
from flagstaff.checks import Run
from flagstaff.evaluate import evaluate
from flagstaff.model import EMPTY_ENV, Env, Flag, parse_flag
from flagstaff.segments import Segment
from flagstaff.snapshot import Snapshot

ALICE = Context(user_id="alice")
BOB = Context(user_id="bob")


class Links:
    """Records every link: which flag, and the env it was given."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.envs: dict[str, Env] = {}

    def reset(self) -> None:
        self.calls.clear()


def segment(name: str, members: Iterable[str] = (), *, holdout: bool = False) -> Segment:
    wanted = frozenset(members)
    return Segment(name=name, document="{}", holdout=holdout, contains=lambda ctx: ctx.user_id in wanted)


def flag(
    name: str,
    links: Links,
    *,
    requires: Iterable[str] = (),
    segments: Iterable[str] = (),
    experiments: bool = False,
) -> Flag:
    """A flag on for everyone, unless a prerequisite fails or (when it names segments)
    the context is in none of them; an experiment flag gives holdout members HOLDOUT."""
    required = tuple(requires)
    named = tuple(sorted(segments))

    def link(env: Env) -> Run:
        if env is not EMPTY_ENV:
            links.calls.append(name)
            links.envs[name] = env

        def run(ctx: Context) -> Decision:
            for p in required:
                prerequisite = env.flags.get(p)
                if prerequisite is None:
                    return Decision(name, False, Reason.PREREQUISITE, rule=p, error=f"no flag named {p!r}")
                if not evaluate(prerequisite, ctx).enabled:
                    return Decision(name, False, Reason.PREREQUISITE, rule=p)
            if experiments:
                for held in env.holdouts:
                    if held.contains(ctx):
                        return Decision(name, False, Reason.HOLDOUT, rule=held.name)
            if named:
                for s in named:
                    found = env.segments.get(s)
                    if found is not None and found.contains(ctx):
                        return Decision(name, True, Reason.RULE, rule=s)
                return Decision(name, False, Reason.DEFAULT)
            return Decision(name, True, Reason.ON)

        return run

    base = parse_flag(name, {"everyone": True})
    return dataclasses.replace(
        base,
        requires=required,
        segments=frozenset(named),
        experiments=experiments,
        link=link,
        run=link(EMPTY_ENV),
        constant=None,
    )


def decide(snap: Snapshot, name: str, ctx: Context = ALICE) -> Decision:
    found = snap.get(name)
    assert found is not None, name
    return evaluate(found, ctx)


@pytest.fixture
def links() -> Links:
    return Links()


# ---------------------------------------------------------------- segments


def test_a_full_build_links_every_flag_to_its_segments(links: Links) -> None:
    staff = segment("staff", ["alice"])
    snap = Snapshot({"f": flag("f", links, segments=["staff"])}, 3, 0.0, {"staff": staff})
    assert decide(snap, "f", ALICE) == Decision("f", True, Reason.RULE, rule="staff")
    assert decide(snap, "f", BOB).enabled is False
    # Unlinked, the same flag has no segment: nobody is a member.
    assert evaluate(flag("f", Links(), segments=["staff"]), ALICE).enabled is False


def test_segments_are_keyed_by_name_even_when_given_by_store_key(links: Links) -> None:
    snap = Snapshot({}, 1, 0.0, {"segment:staff": segment("staff")})
    assert list(snap.segments) == ["staff"]


def test_a_segment_change_reaches_its_flags_in_one_new_snapshot(links: Links) -> None:
    before = Snapshot(
        {"f": flag("f", links, segments=["staff"]), "g": flag("g", links, segments=["staff"])},
        1,
        0.0,
        {"staff": segment("staff", ["bob"])},
    )
    after = before.with_segment(segment("staff", ["alice"]), 2, 1.0)
    assert decide(after, "f").enabled and decide(after, "g").enabled
    assert after.revision == 2 and after.loaded_at == 1.0
    # The old snapshot is untouched (readers holding it still see the old members).
    assert not decide(before, "f").enabled and not decide(before, "g").enabled


def test_a_segment_change_relinks_only_the_flags_that_name_it(links: Links) -> None:
    plain = parse_flag("plain", 50)
    snap = Snapshot(
        {
            "uses_a": flag("uses_a", links, segments=["a"]),
            "uses_b": flag("uses_b", links, segments=["b"]),
            "needs_uses_a": flag("needs_uses_a", links, requires=["uses_a"]),
            "top": flag("top", links, requires=["needs_uses_a"]),
            "plain": plain,
        },
        1,
        0.0,
        {"a": segment("a"), "b": segment("b")},
    )
    links.reset()
    after = snap.with_segment(segment("a", ["alice"]), 2, 0.0)
    # The flag naming it, and those requiring it transitively (they hold it as linked).
    assert sorted(links.calls) == ["needs_uses_a", "top", "uses_a"]
    assert after.flags["uses_b"] is snap.flags["uses_b"]
    assert after.flags["plain"] is plain
    assert decide(after, "top").enabled is True
    assert decide(snap, "top") == Decision("top", False, Reason.PREREQUISITE, rule="needs_uses_a")


def test_a_segment_is_held_once_however_many_flags_use_it(links: Links) -> None:
    big = segment("staff", [f"user-{i}" for i in range(1000)])
    flags = {f"f{i}": flag(f"f{i}", links, segments=["staff"]) for i in range(50)}
    snap = Snapshot(flags, 1, 0.0, {"staff": big})
    assert all(links.envs[name].segments["staff"] is big for name in flags)
    assert snap.segments["staff"] is big
    # Flags naming the same segments share one env, holding only what they name.
    assert links.envs["f0"] is links.envs["f49"]
    assert all(len(links.envs[name].segments) == 1 and not links.envs[name].flags for name in flags)


def test_a_deleted_segment_has_no_member(links: Links) -> None:
    snap = Snapshot(
        {"f": flag("f", links, segments=["staff"])}, 1, 0.0, {"staff": segment("staff", ["alice"])}
    )
    assert decide(snap, "f").enabled
    after = snap.without("segment:staff", 2, 0.0)
    assert "staff" not in after.segments
    assert decide(after, "f") == Decision("f", False, Reason.DEFAULT)


def test_a_segment_that_arrives_after_the_flag_is_linked_in(links: Links) -> None:
    snap = Snapshot({"f": flag("f", links, segments=["staff"])}, 1, 0.0)
    assert not decide(snap, "f").enabled
    after = snap.with_segment(segment("staff", ["alice"]), 2, 0.0)
    assert decide(after, "f").enabled


def test_an_unused_segment_change_relinks_nothing(links: Links) -> None:
    snap = Snapshot({"f": flag("f", links, segments=["staff"])}, 1, 0.0, {"staff": segment("staff")})
    links.reset()
    after = snap.with_segment(segment("other", ["alice"]), 2, 0.0)
    assert links.calls == []
    assert after.flags is snap.flags  # nothing to copy either
    assert set(after.segments) == {"staff", "other"}


# ---------------------------------------------------------------- holdouts


def test_a_holdout_segment_reaches_every_experiment(links: Links) -> None:
    snap = Snapshot(
        {"exp": flag("exp", links, experiments=True), "plain": flag("plain", links, segments=["x"])},
        1,
        0.0,
    )
    links.reset()
    held = snap.with_segment(segment("holdout", ["alice"], holdout=True), 2, 0.0)
    assert links.calls == ["exp"]
    assert held.holdouts == (held.segments["holdout"],)
    assert decide(held, "exp") == Decision("exp", False, Reason.HOLDOUT, rule="holdout")
    assert decide(held, "exp", BOB).enabled
    # No longer a holdout: the experiments are linked again, without it.
    links.reset()
    released = held.with_segment(segment("holdout", ["alice"]), 3, 0.0)
    assert links.calls == ["exp"]
    assert released.holdouts == ()
    assert decide(released, "exp").enabled
    # An ordinary segment change leaves the experiments alone.
    links.reset()
    released.with_segment(segment("other", ["alice"]), 4, 0.0)
    assert links.calls == []


def test_a_flag_that_runs_no_experiment_is_given_no_holdouts(links: Links) -> None:
    Snapshot({"f": flag("f", links, segments=["x"])}, 1, 0.0, {"h": segment("h", ["alice"], holdout=True)})
    assert links.envs["f"].holdouts == ()


# ---------------------------------------------------------------- prerequisites


def test_a_prerequisite_flip_reaches_the_whole_chain(links: Links) -> None:
    snap = Snapshot(
        {
            "a": flag("a", links, segments=["s"]),
            "b": flag("b", links, requires=["a"]),
            "c": flag("c", links, requires=["b"]),
            "other": flag("other", links, segments=["t"]),
        },
        1,
        0.0,
        {"s": segment("s", ["alice"])},
    )
    assert decide(snap, "c").enabled
    links.reset()
    after = snap.with_flag(parse_flag("a", "off"), 2, 0.0)
    assert sorted(links.calls) == ["b", "c"]
    assert decide(after, "b") == Decision("b", False, Reason.PREREQUISITE, rule="a")
    assert decide(after, "c") == Decision("c", False, Reason.PREREQUISITE, rule="b")
    assert after.flags["other"] is snap.flags["other"]
    assert decide(snap, "c").enabled  # the old snapshot still answers as before


def test_prerequisites_are_linked_before_the_flags_that_require_them(links: Links) -> None:
    # Named so that neither the dict's order nor the names' order is the right one.
    snap = Snapshot(
        {"a": flag("a", links, requires=["b"]), "b": flag("b", links, requires=["c"]), "c": flag("c", links)},
        1,
        0.0,
    )
    assert links.calls == ["c", "b", "a"]
    # Each holds its prerequisite as linked in the same build.
    assert links.envs["a"].flags["b"] is snap.flags["b"]
    assert links.envs["b"].flags["c"] is snap.flags["c"]


def test_a_deleted_prerequisite_fails_its_dependents(links: Links) -> None:
    snap = Snapshot({"a": flag("a", links), "b": flag("b", links, requires=["a"])}, 1, 0.0)
    after = snap.without("a", 2, 0.0)
    assert decide(after, "b") == Decision(
        "b", False, Reason.PREREQUISITE, rule="a", error="no flag named 'a'"
    )
    # ...and is linked in again when it comes back.
    back = after.with_flag(flag("a", links), 3, 0.0)
    assert decide(back, "b").enabled


def test_a_flag_changing_what_it_uses_moves_in_the_index(links: Links) -> None:
    snap = Snapshot({"f": flag("f", links, segments=["x"])}, 1, 0.0, {"x": segment("x"), "y": segment("y")})
    moved = snap.with_flag(flag("f", links, segments=["y"]), 2, 0.0)
    links.reset()
    moved.with_segment(segment("x", ["alice"]), 3, 0.0)
    assert links.calls == []
    after = moved.with_segment(segment("y", ["alice"]), 4, 0.0)
    assert links.calls == ["f"]
    assert decide(after, "f").enabled
    assert moved.dependents("segment:x") == frozenset()
    assert moved.dependents("segment:y") == {"f"}


def test_dependents_names_what_a_change_may_reach(links: Links) -> None:
    snap = Snapshot(
        {
            "a": flag("a", links, segments=["s"]),
            "b": flag("b", links, requires=["a"]),
            "c": flag("c", links, requires=["b"]),
            "exp": flag("exp", links, experiments=True),
        },
        1,
        0.0,
        {"s": segment("s"), "h": segment("h", holdout=True)},
    )
    assert snap.dependents("segment:s") == {"a", "b", "c"}
    assert snap.dependents("a") == {"b", "c"}
    assert snap.dependents(["c"]) == frozenset()
    assert snap.dependents("segment:h") == {"exp"}
    assert snap.dependents(["segment:nobody", "missing"]) == frozenset()


def test_a_very_long_chain_builds_without_recursion(links: Links) -> None:
    n = 3000
    flags = {"f0": flag("f0", links)}
    flags.update({f"f{i}": flag(f"f{i}", links, requires=[f"f{i - 1}"]) for i in range(1, n)})
    snap = Snapshot(flags, 1, 0.0)
    assert links.calls[:3] == ["f0", "f1", "f2"] and len(links.calls) == n
    links.reset()
    snap.with_flag(flag("f0", links), 2, 0.0)
    assert len(links.calls) == n


# ---------------------------------------------------------------- cycles


def test_a_cycle_fails_at_the_prerequisite_on_it_and_names_the_chain(links: Links) -> None:
    snap = Snapshot({"a": flag("a", links, requires=["b"]), "b": flag("b", links, requires=["a"])}, 1, 0.0)
    assert decide(snap, "a") == Decision(
        "a", False, Reason.PREREQUISITE, rule="b", error="prerequisite cycle: a -> b -> a"
    )
    assert decide(snap, "b") == Decision(
        "b", False, Reason.PREREQUISITE, rule="a", error="prerequisite cycle: b -> a -> b"
    )


def test_a_flag_requiring_itself_is_a_cycle(links: Links) -> None:
    snap = Snapshot({"a": flag("a", links, requires=["a"])}, 1, 0.0)
    assert decide(snap, "a").error == "prerequisite cycle: a -> a"


def test_a_longer_cycle_and_the_flags_that_require_it(links: Links) -> None:
    snap = Snapshot(
        {
            "a": flag("a", links, requires=["ok", "b"]),
            "b": flag("b", links, requires=["c"]),
            "c": flag("c", links, requires=["a"]),
            "ok": flag("ok", links),
            "outside": flag("outside", links, requires=["c"]),
        },
        1,
        0.0,
    )
    assert decide(snap, "a").error == "prerequisite cycle: a -> b -> c -> a"
    assert decide(snap, "c").error == "prerequisite cycle: c -> a -> b -> c"
    # A flag that requires a member fails at that member, without recursing.
    assert decide(snap, "outside") == Decision("outside", False, Reason.PREREQUISITE, rule="c")
    # The prerequisites off the cycle are still evaluated first.
    off = snap.with_flag(parse_flag("ok", "off"), 2, 0.0)
    assert decide(off, "a") == Decision("a", False, Reason.PREREQUISITE, rule="ok")


def test_a_cycle_made_and_broken_by_changes(links: Links) -> None:
    snap = Snapshot({"a": flag("a", links, requires=["b"]), "b": flag("b", links)}, 1, 0.0)
    assert decide(snap, "a").enabled
    cyclic = snap.with_flag(flag("b", links, requires=["a"]), 2, 0.0)
    assert decide(cyclic, "a").error == "prerequisite cycle: a -> b -> a"
    assert decide(cyclic, "b").error == "prerequisite cycle: b -> a -> b"
    broken = cyclic.with_flag(flag("b", links), 3, 0.0)
    assert decide(broken, "a").enabled and decide(broken, "b").enabled
    assert decide(broken, "a").error is None


# ---------------------------------------------------------------- the rest


def test_revision_only_changes_share_everything(links: Links) -> None:
    snap = Snapshot({"f": flag("f", links, segments=["s"])}, 1, 0.0, {"s": segment("s")})
    later = snap.at(9, 5.0)
    assert (later.revision, later.loaded_at) == (9, 5.0)
    assert later.flags is snap.flags and later.segments is snap.segments
    assert later.dependents("segment:s") == {"f"}


def test_a_flag_linked_elsewhere_is_linked_again_in_a_full_build(links: Links) -> None:
    first = Snapshot({"f": flag("f", links, segments=["s"])}, 1, 0.0, {"s": segment("s", ["alice"])})
    second = Snapshot(dict(first.flags), 2, 0.0, {"s": segment("s", ["bob"])})
    assert decide(first, "f").enabled and not decide(second, "f").enabled
    assert decide(second, "f", BOB).enabled


def test_link_binds_a_foreign_flag_to_the_snapshot(links: Links) -> None:
    snap = Snapshot({}, 1, 0.0, {"s": segment("s", ["alice"])})
    outside = flag("o", links, segments=["s"])
    assert not evaluate(outside, ALICE).enabled
    assert evaluate(snap.link(outside), ALICE).enabled
    plain = parse_flag("p", "on")
    assert snap.link(plain) is plain


def test_without_an_absent_key_is_a_copy(links: Links) -> None:
    snap = Snapshot({"f": flag("f", links)}, 1, 0.0)
    assert set(snap.without("nope", 2, 0.0).flags) == {"f"}
    assert set(snap.without("segment:nope", 3, 0.0).flags) == {"f"}
