"""The flag list in real headless Chromium: login, kill switch, live updates, filters."""

from __future__ import annotations

import sqlite3

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests._support.browser import Dashboard, Watcher, browser_fixture, dashboard_fixture  # noqa: F401 (fixtures)


def test_login_link_opens_the_dashboard_with_every_flag(dashboard: Dashboard) -> None:
    dashboard.login()
    rows = dashboard.visible_rows()
    assert rows == sorted(rows)
    assert set(rows) >= {"dark_mode", "legacy_search", "new_checkout", "checkout_button", "old_onboarding"}
    assert dashboard.badge("dark_mode") == "On"
    assert dashboard.badge("legacy_search") == "Off"
    assert dashboard.badge("old_onboarding") == "Killed"
    assert dashboard.badge("beta_dashboard") == "Partial"
    assert "25%" in dashboard.row("new_checkout").text
    # The write controls are there for an admin token, and named for screen readers.
    kill = dashboard.row("dark_mode").find_element(By.CSS_SELECTOR, "button[data-action=kill]")
    assert kill.get_attribute("aria-label") == "Kill dark_mode"


def test_a_page_without_a_session_redirects_to_login(dashboard: Dashboard) -> None:
    dashboard.open("/")
    assert dashboard.driver.current_url.endswith("/login")
    assert dashboard.driver.find_elements(By.ID, "flag-rows") == []


def test_kill_after_confirming_reaches_a_separate_client_process(dashboard: Dashboard) -> None:
    watcher = Watcher(dashboard.store_url, "beta_dashboard", "alice")
    try:
        assert watcher.next_line(60) == "ready on target"
        dashboard.login()
        version, _ = dashboard.record("beta_dashboard")

        # Cancelling the confirmation changes nothing.
        dashboard.row("beta_dashboard").find_element(By.CSS_SELECTOR, "button[data-action=kill]").click()
        dashboard.wait(lambda d: d.execute_script("return document.getElementById('confirm').open"))
        assert dashboard.css("#confirm-title").text == "Kill beta_dashboard?"
        dashboard.css("#confirm-cancel").click()
        dashboard.wait(lambda d: not d.execute_script("return document.getElementById('confirm').open"))
        assert dashboard.record("beta_dashboard")[0] == version

        dashboard.row("beta_dashboard").find_element(By.CSS_SELECTOR, "button[data-action=kill]").click()
        dashboard.confirm("Kill beta_dashboard?")
        dashboard.wait(lambda d: dashboard.badge("beta_dashboard") == "Killed")
        new_version, document = dashboard.record("beta_dashboard")
        assert new_version == version + 1
        assert document["enabled"] is False
        assert document["users"] == ["alice"]  # the kill keeps the targeting

        assert watcher.next_line() == "change off off"

        # Enable brings it back exactly as it was.
        dashboard.row("beta_dashboard").find_element(By.CSS_SELECTOR, "button[data-action=enable]").click()
        dashboard.confirm("Enable beta_dashboard?")
        dashboard.wait(lambda d: dashboard.badge("beta_dashboard") == "Partial")
        assert watcher.next_line() == "change on target"
    finally:
        err = watcher.close()
    assert watcher.proc.returncode == 0, err


def test_enable_on_a_flag_with_nothing_to_enable_offers_on_for_everyone(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.row("legacy_search").find_element(By.CSS_SELECTOR, "button[data-action=enable]").click()
    dashboard.wait(lambda d: d.execute_script("return document.getElementById('confirm').open"))
    assert dashboard.css("#confirm-title").text == "Enable legacy_search?"
    dashboard.css("#confirm-ok").click()
    # The server says there is nothing to enable: a second question, for a bigger change.
    dashboard.wait(lambda d: d.find_element(By.ID, "confirm-title").text.startswith("Turn legacy_search on"))
    assert "no targeting" in dashboard.css("#confirm-text").text
    assert dashboard.record("legacy_search") == (1, "off")  # nothing written yet
    dashboard.confirm("Turn legacy_search on for everyone?")
    dashboard.wait(lambda d: dashboard.badge("legacy_search") == "On")
    assert dashboard.record("legacy_search") == (2, "on")


def test_a_change_by_someone_else_shows_up_live(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.driver.execute_script("window.notReloaded = true")
    response = dashboard.api("PATCH", "/flags/new_checkout", {"op": "set_percentage", "percentage": 60})
    assert response.status_code == 200, response.text
    dashboard.wait(lambda d: "60%" in dashboard.row("new_checkout").text)
    response = dashboard.api("PATCH", "/flags/dark_mode", {"op": "kill"})
    assert response.status_code == 200, response.text
    dashboard.wait(lambda d: dashboard.badge("dark_mode") == "Killed")
    announced = dashboard.css("#announcer").get_attribute("textContent") or ""
    assert "dark_mode changed" in announced and "someone else" in announced
    assert dashboard.driver.execute_script("return window.notReloaded") is True  # updated in place


def test_a_change_made_straight_in_the_store_shows_up_live(dashboard: Dashboard) -> None:
    dashboard.login()
    with sqlite3.connect(dashboard.db_path) as conn:  # out of band: not through flagstaff
        conn.execute("UPDATE flagstaff_flags SET raw = '\"off\"' WHERE name = 'dark_mode'")
    dashboard.wait(lambda d: dashboard.badge("dark_mode") == "Off")
    dashboard.open("/flags/dark_mode")
    history = dashboard.css("#history-panel").text
    assert "out-of-band" in history


def test_search_and_filters(dashboard: Dashboard) -> None:
    dashboard.backdate("beta_dashboard", 45)
    dashboard.login()
    search = dashboard.css("#f-q")
    search.send_keys("checkout")
    dashboard.wait(lambda d: dashboard.visible_rows() == ["checkout_button", "new_checkout"])
    assert dashboard.css("#flag-count").text.startswith("2 of 10")
    assert "q=checkout" in dashboard.driver.current_url  # the filtered view can be shared as a link

    search.clear()
    search.send_keys("team-web")  # owners and tags are searched too
    dashboard.wait(lambda d: dashboard.visible_rows() == ["beta_dashboard"])

    search.clear()
    search.send_keys("nothing-like-this")
    dashboard.wait(lambda d: dashboard.css("#no-match").is_displayed())
    search.clear()
    search.send_keys(Keys.BACK_SPACE)  # an input event with an empty box

    Select(dashboard.css("#f-state")).select_by_value("off")
    dashboard.wait(lambda d: dashboard.visible_rows() == ["legacy_search", "old_onboarding"])
    Select(dashboard.css("#f-state")).select_by_value("")

    Select(dashboard.css("#f-kind")).select_by_value("stale")
    dashboard.wait(lambda d: dashboard.visible_rows() == ["beta_dashboard"])
    assert "Stale" in dashboard.row("beta_dashboard").text
    assert "Stale" not in dashboard.row("checkout_button").text  # temporary, but changed just now
    Select(dashboard.css("#f-kind")).select_by_value("")

    Select(dashboard.css("#f-tag")).select_by_value("q3")
    dashboard.wait(lambda d: dashboard.visible_rows() == ["beta_dashboard"])

    # The same filters work from the URL, rendered by the server.
    dashboard.open("/?state=on")
    assert dashboard.visible_rows() == ["dark_mode"]
    assert Select(dashboard.css("#f-state")).first_selected_option.text == "on"


def test_slash_focuses_search_and_the_kill_dialog_works_from_the_keyboard(dashboard: Dashboard) -> None:
    dashboard.login()
    body = dashboard.css("body")
    body.send_keys("/")
    assert dashboard.driver.switch_to.active_element.get_attribute("id") == "f-q"
    kill = dashboard.row("dark_mode").find_element(By.CSS_SELECTOR, "button[data-action=kill]")
    kill.send_keys(Keys.ENTER)
    dashboard.wait(lambda d: d.execute_script("return document.getElementById('confirm').open"))
    # The safe choice has the focus; Escape cancels.
    assert dashboard.driver.switch_to.active_element.get_attribute("id") == "confirm-cancel"
    dashboard.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    dashboard.wait(lambda d: not d.execute_script("return document.getElementById('confirm').open"))
    assert dashboard.badge("dark_mode") == "On"
    assert dashboard.driver.switch_to.active_element == kill  # focus goes back to the button

    # Kill with the keyboard alone: Enter, Tab to the confirm button, Enter.
    kill.send_keys(Keys.ENTER)
    dashboard.wait(lambda d: d.execute_script("return document.getElementById('confirm').open"))
    dashboard.driver.switch_to.active_element.send_keys(Keys.TAB)
    assert dashboard.driver.switch_to.active_element.get_attribute("id") == "confirm-ok"
    dashboard.driver.switch_to.active_element.send_keys(Keys.ENTER)
    dashboard.wait(lambda d: dashboard.badge("dark_mode") == "Killed")
    # The row was re-rendered; the focus is on its new button, not lost.
    dashboard.wait(lambda d: d.switch_to.active_element.get_attribute("aria-label") == "Enable dark_mode")
