"""flagstaff.guard: guardrail rates from the SQLite event store, breach, halt with evidence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagstaff import Context, evaluate, parse_flag
from flagstaff.admin import Admin
from flagstaff.cli import main
from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.guard import Guard
from flagstaff.stores import Store, open_store

T0 = 1_800_000_000.0
GUARD = [{"metric": "errors", "max_increase": 0.02, "min_units": 300}]
RAMP_DOC: dict[str, Any] = {
    "ramp": {"steps": [{"at": T0, "percentage": 50}, {"at": T0 + 86400, "percentage": 100}]},
    "guardrails": GUARD,
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'flags.db'}")
    yield s
    s.close()


def write_events(
    path: Path, flag: str, units: int, control_rate: float, treatment_rate: float, *, doc: Any
) -> None:
    """``units`` users exposed at T0 + 10 (variant None, as a plain flag's exposure is);
    every k-th of each arm gets an ``errors`` event after its exposure, so the arms' rates
    are the given ones. One error before exposure, which must not count."""
    flag_obj = parse_flag(flag, doc)
    sink = SQLiteSink(path)
    events: list[Event] = []
    counts = {True: 0, False: 0}
    for i in range(units):
        key = f"u{i}"
        treated = evaluate(flag_obj, Context(user_id=key), T0 + 10).enabled
        counts[treated] += 1
        events.append(Event(EventKind.EXPOSURE, T0 + 10, key, flag))
        rate = treatment_rate if treated else control_rate
        if rate and counts[treated] % round(1 / rate) == 0:
            events.append(Event(EventKind.TRACK, T0 + 20, key, name="errors"))
        elif i % 7 == 0:
            events.append(Event(EventKind.TRACK, T0 - 20, key, name="errors"))  # before: not counted
    sink.write(events)
    sink.close()


def test_breach_is_computed_from_the_event_store(store: Store, tmp_path: Path) -> None:
    Admin(store).set("checkout", RAMP_DOC)
    events = tmp_path / "events.db"
    write_events(events, "checkout", 2000, 0.02, 0.10, doc=RAMP_DOC)
    verdict = Guard(store, events).check("checkout")
    (result,) = verdict.results
    assert 900 < result.treatment_units < 1100 and result.treatment_units + result.control_units == 2000
    assert result.control_rate == pytest.approx(0.02, abs=0.003)
    assert result.treatment_rate == pytest.approx(0.10, abs=0.003)
    assert result.difference == pytest.approx(0.08, abs=0.005)
    low, high = result.interval
    assert 0.02 < low < result.difference < high
    assert verdict.breached and result.problem is None
    assert result.evidence.startswith("errors +8.") and "> 2% (n " in result.evidence


def test_no_breach_within_the_bound(store: Store, tmp_path: Path) -> None:
    Admin(store).set("checkout", RAMP_DOC)
    events = tmp_path / "events.db"
    write_events(events, "checkout", 2000, 0.05, 0.05, doc=RAMP_DOC)
    verdict = Guard(store, events).check("checkout")
    assert not verdict.breached
    assert verdict.results[0].interval[0] < 0.02


def test_control_at_zero_errors_is_still_judged(store: Store, tmp_path: Path) -> None:
    """stats.compare has no answer for a control rate of 0; the guard's normal interval does."""
    Admin(store).set("checkout", RAMP_DOC)
    events = tmp_path / "events.db"
    write_events(events, "checkout", 2000, 0.0, 0.10, doc=RAMP_DOC)
    verdict = Guard(store, events).check("checkout")
    assert verdict.breached and verdict.results[0].control_rate == 0


def test_no_breach_under_min_units(store: Store, tmp_path: Path) -> None:
    doc = {**RAMP_DOC, "guardrails": [{**GUARD[0], "min_units": 5000}]}
    Admin(store).set("checkout", doc)
    events = tmp_path / "events.db"
    write_events(events, "checkout", 2000, 0.02, 0.10, doc=doc)
    guard = Guard(store, events)
    verdict = guard.enforce("checkout")
    assert not verdict.breached and not verdict.halted
    assert "too few units" in (verdict.results[0].problem or "")
    assert "enabled" not in json.loads(store.get("checkout").raw)  # type: ignore[union-attr]


def test_enforce_kills_through_the_admin_with_the_evidence_in_history(store: Store, tmp_path: Path) -> None:
    Admin(store, author="alice").set("checkout", RAMP_DOC)
    events = tmp_path / "events.db"
    write_events(events, "checkout", 2000, 0.02, 0.10, doc=RAMP_DOC)
    verdict = Guard(store, events).enforce("checkout")
    assert verdict.halted
    doc = json.loads(store.get("checkout").raw)  # type: ignore[union-attr]
    assert doc["enabled"] is False and doc["ramp"] == RAMP_DOC["ramp"]  # the rest kept
    assert not evaluate(parse_flag("checkout", doc), Context(user_id="u1"), T0 + 2 * 86400).enabled
    latest = store.history("checkout")[0]
    assert latest.author is not None and latest.author.startswith("guard: errors +8.")
    assert latest.author == verdict.evidence
    # again: already off, nothing written
    again = Guard(store, events).enforce("checkout")
    assert not again.halted and len(store.history("checkout")) == 2


def test_variants_decide_the_arms_and_units_in_both_are_left_out(store: Store, tmp_path: Path) -> None:
    Admin(store).set(
        "exp", {"percentage": 100, "guardrails": [{"metric": "errors", "max_increase": 0.5, "min_units": 1}]}
    )
    events = tmp_path / "events.db"
    sink = SQLiteSink(events)
    sink.write(
        [
            Event(EventKind.EXPOSURE, T0, "a", "exp", "control"),
            Event(EventKind.EXPOSURE, T0, "b", "exp", "blue"),
            Event(EventKind.EXPOSURE, T0, "c", "exp", "blue"),
            Event(EventKind.EXPOSURE, T0, "c", "exp", "off"),
            Event(EventKind.TRACK, T0 + 1, "b", name="errors"),
        ]
    )
    sink.close()
    verdict = Guard(store, events).check("exp")
    (r,) = verdict.results
    assert (r.control_units, r.treatment_units, verdict.switched) == (1, 1, 1)
    assert (r.control_rate, r.treatment_rate) == (0.0, 1.0)


def test_cli_guard_enforce(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Admin(store).set("checkout", RAMP_DOC)
    events = tmp_path / "events.db"
    write_events(events, "checkout", 2000, 0.02, 0.10, doc=RAMP_DOC)
    url = f"sqlite:///{tmp_path / 'flags.db'}"
    assert main(["--store", url, "--json", "guard", "checkout", "--events", str(events)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["breached"] is True and out["halted"] is False
    code = main(
        [
            "--store",
            url,
            "guard",
            "checkout",
            "--events",
            str(events),
            "--enforce",
            "--watch",
            "0",
            "--max-rounds",
            "3",
        ]
    )
    text = capsys.readouterr().out
    assert code == 1 and "halted" in text and "errors +8." in text
    assert json.loads(store.get("checkout").raw)["enabled"] is False  # type: ignore[union-attr]


def test_a_killed_flag_keeps_its_arms(store: Store, tmp_path: Path) -> None:
    """After the halt, check() still places units as the flag did before the kill."""
    Admin(store).set("checkout", RAMP_DOC)
    events = tmp_path / "events.db"
    write_events(events, "checkout", 2000, 0.02, 0.10, doc=RAMP_DOC)
    guard = Guard(store, events)
    before = guard.check("checkout")
    assert guard.enforce("checkout").halted
    after = guard.check("checkout")
    assert after.results == before.results and after.breached


def test_segments_are_read_from_the_store_to_place_units(store: Store, tmp_path: Path) -> None:
    admin = Admin(store)
    admin.set("segment:beta", {"users": [f"u{i}" for i in range(0, 400, 2)]})
    doc = {
        "targeting": [{"segments": ["beta"], "serve": {"percentage": 100}}],
        "guardrails": [{"metric": "errors", "max_increase": 0.02, "min_units": 100}],
    }
    admin.set("beta_only", doc)
    events = tmp_path / "events.db"
    sink = SQLiteSink(events)
    batch = [Event(EventKind.EXPOSURE, T0, f"u{i}", "beta_only") for i in range(400)]
    batch += [Event(EventKind.TRACK, T0 + 1, f"u{i}", name="errors") for i in range(0, 400, 4)]  # beta only
    sink.write(batch)
    sink.close()
    (r,) = Guard(store, events).check("beta_only").results
    assert (r.treatment_units, r.control_units) == (200, 200)
    assert (r.treatment_rate, r.control_rate) == (0.5, 0.0)
    assert r.breached
