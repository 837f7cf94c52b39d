"""One flag's page in real headless Chromium: experiment editor, history and
rollback, percentage, users and groups, the JSON document, live changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from flagstaff.http.app import Settings
from tests._support.browser import (  # noqa: F401 (fixtures)
    Dashboard,
    browser_fixture,
    dashboard_fixture,
    make_dashboard,
)


def _weight(dashboard: Dashboard, variant: str) -> WebElement:
    for row in dashboard.driver.find_elements(By.CSS_SELECTOR, "#experiment-panel tr[data-variant]"):
        if row.find_element(By.CSS_SELECTOR, "input.vname").get_attribute("value") == variant:
            return row.find_element(By.CSS_SELECTOR, "input.weight")
    raise AssertionError(f"no variant {variant!r} in the editor")


def _type(field: WebElement, text: str) -> None:
    field.clear()
    field.send_keys(text)


def _message(dashboard: Dashboard, msg_id: str, kind: str) -> str:
    """The text of message ``msg_id`` once it shows a message of ``kind`` (ok, error)."""

    def shown(driver: WebDriver) -> str:
        el = driver.find_element(By.ID, msg_id)
        return el.text if kind in (el.get_attribute("class") or "").split() else ""

    return dashboard.wait(shown)


def test_a_bad_weight_is_refused_with_the_message_and_nothing_is_saved(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/checkout_button")
    dashboard.wait_live()
    version, before = dashboard.record("checkout_button")

    _type(_weight(dashboard, "green"), "40")  # 4 variants (controls included): at most 25% each
    dashboard.css("#experiment-panel button[type=submit]").click()
    text = _message(dashboard, "exp-msg", "error")
    assert text.startswith("Not saved")
    assert "experiment.variants.green: 40% is more than 100/4 = 25%" in text
    assert _weight(dashboard, "green").get_attribute("aria-invalid") == "true"
    assert dashboard.record("checkout_button") == (version, before)

    _type(_weight(dashboard, "green"), "20")
    _type(_weight(dashboard, "orange"), "22.5")
    dashboard.css("#experiment-panel button[type=submit]").click()
    assert _message(dashboard, "exp-msg", "ok") == f"Saved as version {version + 1}."
    new_version, after = dashboard.record("checkout_button")
    assert new_version == version + 1
    assert after["experiment"]["variants"] == {"green": 20, "orange": 22.5}
    assert after["experiment"]["experiment_id"] == 4201  # the rest of the document is kept
    assert after["description"] == before["description"]


def test_add_a_variant_check_then_save(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/checkout_button")
    dashboard.css("button[data-action=add-variant]").click()
    rows = dashboard.driver.find_elements(By.CSS_SELECTOR, "#experiment-panel tr[data-variant]")
    assert len(rows) == 3
    new_name = rows[-1].find_element(By.CSS_SELECTOR, "input.vname")
    assert dashboard.driver.switch_to.active_element == new_name
    new_name.send_keys("blue")
    rows[-1].find_element(By.CSS_SELECTOR, "input.weight").send_keys("20")
    _type(_weight(dashboard, "green"), "20")
    _type(_weight(dashboard, "orange"), "20")
    version, _ = dashboard.record("checkout_button")
    dashboard.css("button[data-action=validate-experiment]").click()
    assert _message(dashboard, "exp-msg", "ok").startswith("Valid")
    assert dashboard.record("checkout_button")[0] == version  # checking saves nothing
    dashboard.css("#experiment-panel button[type=submit]").click()
    dashboard.wait(lambda d: _message(dashboard, "exp-msg", "ok").startswith("Saved"))
    assert dashboard.record("checkout_button")[1]["experiment"]["variants"] == {
        "green": 20,
        "orange": 20,
        "blue": 20,
    }


def test_a_stale_edit_is_refused_not_written_over_someone_elses(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/checkout_button")
    dashboard.wait_live()
    _type(_weight(dashboard, "green"), "15")  # unsaved edit in progress
    response = dashboard.api(
        "PATCH", "/flags/checkout_button", {"op": "set_variants", "variants": {"green": 10, "orange": 10}}
    )
    assert response.status_code == 200, response.text
    banner = dashboard.wait(lambda d: (b := d.find_element(By.ID, "changed-banner")).is_displayed() and b)
    assert "changed while you were editing" in banner.text
    assert _weight(dashboard, "green").get_attribute("value") == "15"  # the edit is kept
    dashboard.css("#experiment-panel button[type=submit]").click()
    assert "Someone else changed the flag" in _message(dashboard, "exp-msg", "error")
    assert dashboard.record("checkout_button")[1]["experiment"]["variants"] == {"green": 10, "orange": 10}


def test_roll_back_from_history(dashboard: Dashboard) -> None:
    for pct in (50, 75):
        response = dashboard.api("PATCH", "/flags/new_checkout", {"op": "set_percentage", "percentage": pct})
        assert response.status_code == 200, response.text
    dashboard.login()
    dashboard.open("/flags/new_checkout")
    history = dashboard.css("#history-panel")
    versions = [
        r.get_attribute("data-history-version") for r in history.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert versions == ["3", "2", "1"]
    assert "50 → 75" in history.text
    # The diff of a change is one click away.
    first = history.find_element(By.CSS_SELECTOR, "tbody tr details")
    first.find_element(By.TAG_NAME, "summary").click()
    diff = first.find_element(By.CSS_SELECTOR, "pre.diff").text
    assert "-50" in diff.replace(" ", "") and "+75" in diff.replace(" ", "")

    dashboard.css("button[data-action=rollback][data-version='1']").click()
    dashboard.confirm("Roll back new_checkout to version 1?")
    dashboard.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#state-panel [data-field=version]").text == "4")
    assert dashboard.record("new_checkout") == (4, 25)
    assert "rolled back" in dashboard.css("#history-msg").text
    assert "25%" in dashboard.css("#state-panel").text


def test_a_rollback_comment_is_kept_in_history(dashboard: Dashboard) -> None:
    response = dashboard.api("PATCH", "/flags/new_checkout", {"op": "set_percentage", "percentage": 60})
    assert response.status_code == 200, response.text
    dashboard.login()
    dashboard.open("/flags/new_checkout")
    dashboard.wait_live()
    dashboard.css("button[data-action=rollback][data-version='1']").click()
    box = dashboard.wait(lambda d: d.find_element(By.ID, "confirm-comment"))
    assert box.is_displayed() and box.get_attribute("value") == ""
    # Enter in the box neither cancels nor confirms: the dialog stays open with the text.
    box.send_keys("checkout errors at 60%", Keys.ENTER)
    assert dashboard.driver.execute_script("return document.getElementById('confirm').open")
    dashboard.confirm("Roll back new_checkout to version 1?")
    _message(dashboard, "history-msg", "ok")
    assert dashboard.record("new_checkout") == (3, 25)
    entry = json.loads(dashboard.api("GET", "/flags/new_checkout/history?limit=1").text)["entries"][0]
    assert entry["version"] == 3 and entry["comment"] == "checkout errors at 60%"
    # The page shows it on the new history row once the live update lands.
    row = "tr[data-history-version='3']"
    dashboard.wait(lambda d: "checkout errors at 60%" in d.find_element(By.CSS_SELECTOR, row).text)
    # The kill switch asks no comment: the box is hidden in its dialog.
    dashboard.css("button[data-action=kill]").click()
    dashboard.wait(lambda d: d.find_element(By.ID, "confirm-title").text == "Kill new_checkout?")
    assert not dashboard.css("#confirm-comment").is_displayed()
    dashboard.css("#confirm-cancel").click()


@pytest.fixture
def commenting(browser: WebDriver, tmp_path: Path) -> Iterator[Dashboard]:
    yield from make_dashboard(browser, tmp_path, Settings(requires_comment=True))


def test_a_rollback_without_a_comment_where_one_is_required_shows_why(commenting: Dashboard) -> None:
    dashboard = commenting
    response = dashboard.api(
        "PATCH", "/flags/new_checkout", {"op": "set_percentage", "percentage": 60, "comment": "ramp"}
    )
    assert response.status_code == 200, response.text
    dashboard.login()
    dashboard.open("/flags/new_checkout")
    dashboard.wait_live()
    dashboard.css("button[data-action=rollback][data-version='1']").click()
    dashboard.confirm("Roll back new_checkout to version 1?")
    error = _message(dashboard, "history-msg", "error")
    assert "requires a comment with every change" in error
    assert dashboard.record("new_checkout") == (2, 60)  # nothing written
    # With a comment the same rollback goes through, and history keeps the comment.
    dashboard.css("button[data-action=rollback][data-version='1']").click()
    dashboard.confirm("Roll back new_checkout to version 1?", comment="ramp broke checkout")
    _message(dashboard, "history-msg", "ok")
    assert dashboard.record("new_checkout") == (3, 25)
    entry = json.loads(dashboard.api("GET", "/flags/new_checkout/history?limit=1").text)["entries"][0]
    assert entry["comment"] == "ramp broke checkout"


def test_percentage_users_and_groups(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/beta_dashboard")
    _type(dashboard.css("#pct-number"), "12.5")
    dashboard.css("#rollout-panel button[type=submit]").click()
    dashboard.wait(lambda d: "12.5%" in d.find_element(By.ID, "state-panel").text)
    assert dashboard.record("beta_dashboard")[1]["percentage"] == 12.5

    _type(dashboard.css("#pct-number"), "150")
    dashboard.css("#rollout-panel button[type=submit]").click()
    assert "0 to 100" in _message(dashboard, "pct-msg", "error")

    dashboard.css("#add-users").send_keys("bob")
    dashboard.css("#add-users").submit()
    dashboard.wait(lambda d: "bob" in d.find_element(By.ID, "users-list").text)
    dashboard.css("#add-groups").send_keys("staff")
    dashboard.css("#add-groups").submit()
    dashboard.wait(lambda d: "staff" in d.find_element(By.ID, "groups-list").text)
    document = dashboard.record("beta_dashboard")[1]
    assert document["users"] == ["alice", "bob"] and document["groups"] == ["beta", "staff"]

    dashboard.css("button[aria-label='Remove user alice']").click()
    dashboard.confirm("Remove user alice from beta_dashboard?")
    dashboard.wait(lambda d: "alice" not in d.find_element(By.ID, "users-list").text)
    assert dashboard.record("beta_dashboard")[1]["users"] == ["bob"]


def test_document_editor_refuses_bad_json_and_unknown_keys(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/dark_mode")
    version, _ = dashboard.record("dark_mode")
    text = dashboard.css("#doc-text")
    _type(text, "{not json")
    dashboard.css("#document-panel button[type=submit]").click()
    assert "not valid JSON" in _message(dashboard, "doc-msg", "error")
    _type(text, '{"enabeld": "on"}')
    dashboard.css("#document-panel button[type=submit]").click()
    assert "did you mean 'enabled'" in _message(dashboard, "doc-msg", "error")
    assert dashboard.record("dark_mode")[0] == version
    _type(text, '{"enabled": "on", "owner": "team-ui"}')
    dashboard.css("#document-panel button[type=submit]").click()
    _message(dashboard, "doc-msg", "ok")
    assert dashboard.record("dark_mode") == (version + 1, {"enabled": "on", "owner": "team-ui"})


def test_kill_from_the_flag_page_and_someone_elses_change_appears(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/search_ranker")
    dashboard.wait_live()
    dashboard.css("#state-panel button[data-action=kill]").click()
    dashboard.confirm("Kill search_ranker?")
    dashboard.wait(lambda d: "Killed" in d.find_element(By.ID, "state-panel").text)
    assert dashboard.record("search_ranker")[1]["enabled"] is False
    response = dashboard.api("PATCH", "/flags/search_ranker", {"op": "add_users", "users": ["erin"]})
    assert response.status_code == 200, response.text
    dashboard.wait(lambda d: "erin" in d.find_element(By.ID, "users-list").text)
