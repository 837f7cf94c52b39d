"""The flag page in real headless Chromium: the guard's state, and the blast radius
shown before a document is saved (keyboard only), over a real SQLite event store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from flagstaff.context import Context
from flagstaff.evaluate import evaluate
from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.http.app import Settings
from flagstaff.http.views import flag_view
from flagstaff.model import parse_flag
from flagstaff.stores.base import Record
from tests._support.browser import (  # noqa: F401 (fixtures)
    Dashboard,
    browser_fixture,
    dashboard_fixture,
    make_dashboard,
)

GUARDED = {"percentage": 50, "guardrails": [{"metric": "errors", "max_increase": 0.02, "min_units": 300}]}
KEYS = [f"user-{i}" for i in range(1000)]


def _events(dashboard: Dashboard) -> Path:
    return Path(f"{dashboard.db_path}.events")  # where the server reads and ingests events


def record_breach(path: Path) -> None:
    """2,000 users of ``guarded`` an hour ago; the treatment errs at 10%, control at 2%."""
    flag = parse_flag("guarded", GUARDED)
    now = time.time()
    counts = {True: 0, False: 0}
    events = []
    for i in range(2000):
        key = f"u{i}"
        treated = evaluate(flag, Context(user_id=key), now).enabled
        counts[treated] += 1
        events.append(Event(EventKind.EXPOSURE, now - 3600, key, "guarded"))
        if counts[treated] % (10 if treated else 50) == 0:
            events.append(Event(EventKind.TRACK, now - 1800, key, name="errors"))
    sink = SQLiteSink(path)
    sink.write(events)
    sink.close()


@pytest.fixture
def guarded(browser: WebDriver, tmp_path: Path) -> Iterator[Dashboard]:
    """A dashboard whose server runs its guard loop every 0.3 s."""
    yield from make_dashboard(browser, tmp_path, Settings(guard_interval=0.3))


def test_the_guard_halts_and_the_open_page_shows_why(guarded: Dashboard) -> None:
    assert guarded.api("PUT", "/flags/guarded", {"document": GUARDED}).status_code == 201
    guarded.login()
    guarded.open("/flags/guarded")
    guarded.wait_live()
    panel = guarded.css("#guard-panel")
    assert "every 0.3 s" in panel.text
    assert "not judged yet" in panel.text or "Last checked" in panel.text
    assert not guarded.driver.find_elements(By.ID, "guard-halted")

    record_breach(_events(guarded))  # the loop's next round judges it, and halts the flag
    halted = guarded.wait(lambda d: (e := d.find_elements(By.ID, "guard-halted")) and e[0])
    assert "Halted by the guard" in halted.text and "guard: errors +" in halted.text
    row = guarded.css("#guard-table tr[data-guardrail=errors]")
    assert row.get_attribute("data-breached") == "yes" and "breached" in row.text
    assert "Killed" in guarded.css("#state-panel").text  # the state panel was refreshed too
    assert guarded.record("guarded")[1] == {**GUARDED, "enabled": False}
    history = guarded.css("#history-panel").text
    assert "killed" in history and "guard: errors" in history


def test_a_flag_without_guardrails_has_no_guard_panel(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/new_checkout")
    assert dashboard.driver.find_elements(By.ID, "guard-panel") == []


def _seen(dashboard: Dashboard) -> None:
    sink = SQLiteSink(_events(dashboard))
    sink.write([Event(EventKind.EXPOSURE, time.time() - 3600, key, "other") for key in KEYS])
    sink.close()


def _dialog_open(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return document.getElementById('confirm').open"))


def test_the_blast_radius_is_shown_before_a_save_and_cancel_writes_nothing(dashboard: Dashboard) -> None:
    _seen(dashboard)
    n = sum(evaluate(parse_flag("new_checkout", 25), Context(user_id=k)).enabled for k in KEYS)
    dashboard.login()
    dashboard.open("/flags/new_checkout")
    dashboard.wait_live()
    version, before = dashboard.record("new_checkout")
    editor = dashboard.css("#doc-text")
    editor.clear()
    editor.send_keys('{"percentage": 0}')
    save = dashboard.css("#document-panel button[type=submit]")
    save.send_keys(Keys.ENTER)  # keyboard only from here

    dashboard.wait(_dialog_open)
    text = dashboard.css("#confirm-text").text
    assert text.startswith(f"{n:,} of 1,000 units seen in the last 7 days would change: {n:,} on -> off")
    assert dashboard.css("#confirm-title").text == "Save new_checkout?"
    assert dashboard.driver.switch_to.active_element == dashboard.css("#confirm-cancel")  # the safe default
    dashboard.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    dashboard.wait(lambda d: not _dialog_open(d))
    assert "Not saved: cancelled" in dashboard.css("#doc-msg").text
    assert dashboard.driver.switch_to.active_element == save  # focus back where it was
    assert dashboard.record("new_checkout") == (version, before)

    save.send_keys(Keys.ENTER)
    dashboard.wait(_dialog_open)
    dashboard.driver.switch_to.active_element.send_keys(Keys.TAB)  # Cancel -> Save
    ok = dashboard.css("#confirm-ok")
    assert dashboard.driver.switch_to.active_element == ok and ok.text == "Save new_checkout"
    ok.send_keys(Keys.ENTER)
    dashboard.wait(lambda d: d.find_element(By.ID, "doc-msg").text == f"Saved as version {version + 1}.")
    assert dashboard.record("new_checkout") == (version + 1, {"percentage": 0})


def test_an_invalid_document_skips_the_preview_and_shows_the_problem(dashboard: Dashboard) -> None:
    _seen(dashboard)
    dashboard.login()
    dashboard.open("/flags/new_checkout")
    version, before = dashboard.record("new_checkout")
    editor = dashboard.css("#doc-text")
    editor.clear()
    editor.send_keys("{not json")
    dashboard.css("#document-panel button[type=submit]").click()
    dashboard.wait(lambda d: "not valid JSON" in d.find_element(By.ID, "doc-msg").text)
    assert not _dialog_open(dashboard.driver)
    editor.clear()
    editor.send_keys('{"percentage": 200}')
    dashboard.css("#document-panel button[type=submit]").click()
    dashboard.wait(lambda d: "error" in (d.find_element(By.ID, "doc-msg").get_attribute("class") or ""))
    assert "percentage" in dashboard.css("#doc-msg").text and not _dialog_open(dashboard.driver)
    assert dashboard.record("new_checkout") == (version, before)


def test_a_ramp_reads_as_its_steps_and_where_it_is_now() -> None:
    now = time.time()
    doc = {"ramp": {"steps": [{"at": now - 3600, "percentage": 1}, {"at": now + 86400, "percentage": 5}]}}
    record = Record("ramped", json.dumps(doc), 1)
    text = flag_view(record, None, now=now, stale_days=30).schedule
    assert text is not None and text.startswith("ramps 1% at ") and " → 5% at " in text
    assert text.endswith(", now at 1%")
    later = flag_view(record, None, now=now + 2 * 86400, stale_days=30).schedule
    assert later is not None and later.endswith(", now at 5%")
    windowed = {**doc, "schedule": {"end": now + 7 * 86400}}
    both = flag_view(Record("ramped", json.dumps(windowed), 1), None, now=now, stale_days=30).schedule
    assert both is not None and both.startswith("scheduled until ") and "; ramps 1% at " in both


def test_check_now_judges_without_halting(dashboard: Dashboard) -> None:
    assert dashboard.api("PUT", "/flags/guarded", {"document": GUARDED}).status_code == 201
    record_breach(_events(dashboard))
    dashboard.login()
    dashboard.open("/flags/guarded")
    panel = dashboard.css("#guard-panel")
    assert "Not checked yet." in panel.text and "every 60 s" in panel.text
    assert "not judged yet" in dashboard.css("#guard-table").text
    dashboard.css("#guard-check").send_keys(Keys.ENTER)
    message = dashboard.wait(lambda d: (m := d.find_element(By.ID, "guard-msg")).text and m)
    assert message.text == "Checked: a guardrail is breached."
    row = dashboard.css("#guard-table tr[data-guardrail=errors]")
    assert row.get_attribute("data-breached") == "yes"
    assert "(a check only)" in dashboard.css("#guard-checked").text
    assert dashboard.driver.switch_to.active_element == dashboard.css("#guard-check")
    assert dashboard.record("guarded") == (1, GUARDED)  # judged, not halted
