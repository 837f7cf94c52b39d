"""flagstaff.blast: units seen recently, decided under the current and the new document."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from flagstaff.blast import BlastRadius, NoEventStore, blast_radius, state_of
from flagstaff.context import Context
from flagstaff.errors import ValidationError
from flagstaff.evaluate import evaluate
from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.model import parse_flag
from flagstaff.snapshot import Snapshot

NOW = 1_800_000_000.0
DAY = 86_400.0
KEYS = [f"user-{i}" for i in range(1000)]
SPLIT = {"default": {"variants": {"a": 50, "b": 50}}}
RESPLIT = {"default": {"variants": {"a": 30, "b": 70}}}
EXPERIMENT = {"experiment": {"experiment_id": 7, "loggedin": True, "variants": {"a": 20, "b": 20}}}
REWEIGHED = {"experiment": {"experiment_id": 7, "loggedin": True, "variants": {"a": 10, "b": 25}}}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 keys exposed an hour ago; 50 more only eight days ago; 10 seen only by track events."""
    path = tmp_path_factory.mktemp("blast") / "events.db"
    sink = SQLiteSink(path)
    sink.write([Event(EventKind.EXPOSURE, NOW - 3600, key, "other_flag") for key in KEYS])
    sink.write([Event(EventKind.EXPOSURE, NOW - 3700, key, "checkout") for key in KEYS[:100]])  # repeats
    sink.write([Event(EventKind.EXPOSURE, NOW - 8 * DAY, f"old-{i}", "checkout") for i in range(50)])
    sink.write([Event(EventKind.TRACK, NOW - 60, f"tracked-{i}", name="purchase") for i in range(10)])
    sink.close()
    return path


def snapshot(document: object) -> Snapshot:
    return Snapshot({"checkout": parse_flag("checkout", document)})


def oracle(old: object, new: object, keys: list[str]) -> Counter[tuple[str, str]]:
    """The transitions counted key by key, the slow obvious way."""
    before, after = parse_flag("checkout", old), parse_flag("checkout", new)
    moves: Counter[tuple[str, str]] = Counter()
    for key in keys:
        ctx = Context(user_id=key)
        a, b = state_of(evaluate(before, ctx, NOW)), state_of(evaluate(after, ctx, NOW))
        if a != b:
            moves[a, b] += 1
    return moves


def test_ten_percent_to_zero_counts_exactly_the_users_who_were_in(events: Path) -> None:
    seen = KEYS + [f"tracked-{i}" for i in range(10)]
    ten = parse_flag("checkout", {"percentage": 10})
    was_in = sum(evaluate(ten, Context(user_id=k)).enabled for k in seen)
    assert 50 < was_in < 150  # about 10% of 1,010
    radius = blast_radius(snapshot({"percentage": 10}), "checkout", {"percentage": 0}, events, now=NOW)
    assert isinstance(radius, BlastRadius)
    assert radius.units == 1010  # distinct: repeats once, tracked keys included, old ones not
    assert radius.changed == radius.on_to_off == was_in
    assert radius.off_to_on == radius.variant_changes == 0
    assert [(t.before, t.after, t.units) for t in radius.transitions] == [("on", "off", was_in)]
    assert radius.summary() == (
        f"{was_in:,} of 1,010 units seen in the last 7 days would change: {was_in:,} on -> off"
    )


def test_variant_weight_change_counts_variant_transitions(events: Path) -> None:
    radius = blast_radius(snapshot(SPLIT), "checkout", RESPLIT, events, now=NOW)
    expected = oracle(SPLIT, RESPLIT, KEYS + [f"tracked-{i}" for i in range(10)])
    assert set(expected) == {("a", "b")}  # a 50/50 split moved to 30/70: only a -> b
    assert 150 < expected["a", "b"] < 250  # about 20% of 1,010
    assert [(t.before, t.after, t.units) for t in radius.transitions] == [("a", "b", expected["a", "b"])]
    assert radius.changed == radius.variant_changes == expected["a", "b"]
    assert radius.on_to_off == radius.off_to_on == 0
    assert radius.summary().endswith(f"would change: {expected['a', 'b']:,} a -> b")


def test_experiment_reweighing_matches_key_by_key(events: Path) -> None:
    radius = blast_radius(snapshot(EXPERIMENT), "checkout", REWEIGHED, events, now=NOW)
    expected = oracle(EXPERIMENT, REWEIGHED, KEYS + [f"tracked-{i}" for i in range(10)])
    assert {(t.before, t.after): t.units for t in radius.transitions} == dict(expected)
    assert radius.changed == sum(expected.values()) > 0
    assert radius.on_to_off == sum(n for (a, b), n in expected.items() if b == "off")
    assert radius.off_to_on == sum(n for (a, b), n in expected.items() if a == "off")
    units = [t.units for t in radius.transitions]
    assert units == sorted(units, reverse=True)


def test_days_window_excludes_old_events(events: Path) -> None:
    week = blast_radius(snapshot("off"), "checkout", "on", events, now=NOW)
    assert week.units == week.off_to_on == 1010
    fortnight = blast_radius(snapshot("off"), "checkout", "on", events, days=14, now=NOW)
    assert fortnight.units == fortnight.changed == 1060
    recent = blast_radius(snapshot("off"), "checkout", "on", events, days=0.01, now=NOW)
    assert recent.units == 10  # only the track events of a minute ago


def test_no_change_and_same_document(events: Path) -> None:
    radius = blast_radius(snapshot({"percentage": 10}), "checkout", {"percentage": 10}, events, now=NOW)
    assert radius.changed == 0 and radius.transitions == ()
    assert radius.summary() == "0 of 1,010 units seen in the last 7 days would change"


def test_cap_is_said(events: Path) -> None:
    radius = blast_radius(snapshot("off"), "checkout", "on", events, now=NOW, limit=100)
    assert radius.capped and radius.units == 100 and radius.changed == 100
    assert "100 of 100+ units" in radius.summary()
    assert radius.to_dict()["capped"] is True


def test_documents_mapping_and_new_flag(events: Path) -> None:
    radius = blast_radius({"checkout": "on"}, "checkout", "off", events, now=NOW)
    assert radius.on_to_off == 1010
    fresh = blast_radius(Snapshot(), "checkout", "on", events, now=NOW)  # off for everyone today
    assert fresh.off_to_on == 1010


def test_prerequisite_links_in_the_same_snapshot(events: Path) -> None:
    base = Snapshot({"gate": parse_flag("gate", "off"), "checkout": parse_flag("checkout", "off")})
    radius = blast_radius(base, "checkout", {"prerequisites": ["gate"], "everyone": True}, events, now=NOW)
    assert radius.changed == 0  # the gate is off: nobody moves
    opened = Snapshot({"gate": parse_flag("gate", "on"), "checkout": parse_flag("checkout", "off")})
    radius = blast_radius(opened, "checkout", {"prerequisites": ["gate"], "everyone": True}, events, now=NOW)
    assert radius.off_to_on == 1010


def test_invalid_document_and_missing_store(events: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        blast_radius(snapshot("off"), "checkout", {"percentage": 200}, events, now=NOW)
    with pytest.raises(NoEventStore):
        blast_radius(snapshot("off"), "checkout", "on", tmp_path / "absent.db", now=NOW)
    with pytest.raises(ValueError):
        blast_radius(snapshot("off"), "checkout", "on", events, days=0, now=NOW)
    assert not (tmp_path / "absent.db").exists()  # a preview never creates the store


def test_empty_file_is_nobody(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    radius = blast_radius(snapshot("off"), "checkout", "on", path, now=NOW)
    assert radius.units == 0 and radius.changed == 0


def test_hundred_thousand_keys_is_fast(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    sink = SQLiteSink(path)
    sink.write([Event(EventKind.EXPOSURE, NOW - 60, f"u{i}", "checkout") for i in range(100_000)])
    sink.close()
    started = time.perf_counter()
    radius = blast_radius(snapshot({"percentage": 10}), "checkout", "off", path, now=NOW)
    elapsed = time.perf_counter() - started
    assert radius.units == 100_000 and 9_000 < radius.on_to_off < 11_000
    assert elapsed < 3.0, elapsed
