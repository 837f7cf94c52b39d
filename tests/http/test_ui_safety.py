"""The dashboard never overwrites what it has not seen (issue 12, section 6), in
real headless Chromium: every write carries the version the page showed, a
refused write says what changed, a reconnect re-reads, a dead session says so,
the stream is closed on navigation, kill/enable/confirmations/the user box, a
phone-sized window, and a flag page that stays small with 200,000 users."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from flagstaff.admin import Admin
from flagstaff.stores import open_store
from tests._support.browser import WAIT, Dashboard, browser_fixture, dashboard_fixture  # noqa: F401 (fixtures)
from tests._support.http_server import ServerThread


def _type(dashboard: Dashboard, selector: str, text: str, submit: bool = False) -> None:
    """Type into a field (and submit its form), again from the start if a live
    refresh replaced the field meanwhile."""

    def attempt(driver: WebDriver) -> bool:
        field = driver.find_element(By.CSS_SELECTOR, selector)
        field.clear()
        field.send_keys(text)
        if submit:
            field.submit()
        return True

    dashboard.wait(attempt)


def _click(dashboard: Dashboard, selector: str) -> None:
    """Click, again if a live refresh replaced the element just before."""

    def attempt(driver: WebDriver) -> bool:
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True

    dashboard.wait(attempt)


def _message(dashboard: Dashboard, msg_id: str, kind: str) -> str:
    """The text of message ``msg_id`` once it shows a message of ``kind`` (ok, error)."""

    def shown(driver: WebDriver) -> str:
        el = driver.find_element(By.ID, msg_id)
        return el.text if kind in (el.get_attribute("class") or "").split() else ""

    return dashboard.wait(shown)


def _dialog_open(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return document.getElementById('confirm').open"))


def _cancel(dashboard: Dashboard, expected_title: str) -> None:
    dashboard.wait(_dialog_open)
    assert dashboard.css("#confirm-title").text == expected_title
    dashboard.css("#confirm-cancel").click()
    dashboard.wait(lambda d: not _dialog_open(d))


def _stop_following(dashboard: Dashboard) -> None:
    """Stop the page's live updates (what the page does on pagehide), so that it
    keeps showing what it rendered while someone else changes the flag."""
    dashboard.driver.execute_script("window.dispatchEvent(new Event('pagehide'))")


def _set_elsewhere(dashboard: Dashboard, name: str, document: object) -> None:
    store = open_store(dashboard.store_url)
    try:
        Admin(store, author="colleague@cli").set(name, document)
    finally:
        store.close()


# --------------------------------------------------------------------------- If-Match on every write


def test_a_stale_percentage_is_refused_and_the_change_is_shown(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/new_checkout")
    dashboard.wait_live()
    _type(dashboard, "#pct-number", "99")  # typed, not saved yet
    _set_elsewhere(dashboard, "new_checkout", 20)  # a colleague's CLI change
    dashboard.wait(lambda d: d.find_element(By.ID, "changed-banner").is_displayed())
    dashboard.css("#rollout-panel button[type=submit]").click()
    text = _message(dashboard, "pct-msg", "error")
    assert "Nothing was overwritten" in text
    assert "version 1 → 2" in text
    assert "document: 25 → 20" in text  # what changed, old and current value
    assert dashboard.record("new_checkout") == (2, 20)


def _kill(dashboard: Dashboard) -> None:
    dashboard.css("#state-panel button[data-action=kill]").click()
    dashboard.confirm("Kill beta_dashboard?")


def _set_percentage(dashboard: Dashboard) -> None:
    _type(dashboard, "#pct-number", "50")
    dashboard.css("#rollout-panel button[type=submit]").click()


def _add_user(dashboard: Dashboard) -> None:
    _type(dashboard, "#add-users", "zoe", submit=True)


def _remove_user(dashboard: Dashboard) -> None:
    dashboard.css("button[aria-label='Remove user alice']").click()
    dashboard.confirm("Remove user alice from beta_dashboard?")


def _rollback(dashboard: Dashboard) -> None:
    dashboard.css("button[data-action=rollback][data-version='1']").click()
    dashboard.confirm("Roll back beta_dashboard to version 1?")


@pytest.mark.parametrize(
    ("action", "msg_id"),
    [
        (_kill, "state-msg"),
        (_set_percentage, "pct-msg"),
        (_add_user, "targets-msg"),
        (_remove_user, "targets-msg"),
        (_rollback, "history-msg"),
    ],
    ids=["kill", "set-percentage", "add-user", "remove-user", "rollback"],
)
def test_no_write_from_a_stale_page_overwrites_a_change_it_has_not_seen(
    dashboard: Dashboard, action: Callable[[Dashboard], None], msg_id: str
) -> None:
    response = dashboard.api("PATCH", "/flags/beta_dashboard", {"op": "add_users", "users": ["bob"]})
    assert response.status_code == 200, response.text  # version 2, so there is a v1 to roll back to
    dashboard.login()
    dashboard.open("/flags/beta_dashboard")
    dashboard.wait_live()
    _stop_following(dashboard)
    seen = {"users": ["alice", "bob"], "groups": ["beta"], "owner": "colleague"}
    _set_elsewhere(dashboard, "beta_dashboard", seen)
    action(dashboard)
    text = _message(dashboard, msg_id, "error")
    assert "Nothing was overwritten" in text
    assert "version 2 → 3" in text
    assert 'owner: "team-web" → "colleague"' in text
    assert dashboard.record("beta_dashboard") == (3, seen)


def test_kill_from_a_stale_list_row_is_refused(dashboard: Dashboard) -> None:
    dashboard.login()
    _stop_following(dashboard)
    _set_elsewhere(dashboard, "dark_mode", {"enabled": "on", "owner": "team-ui"})
    dashboard.row("dark_mode").find_element(By.CSS_SELECTOR, "button[data-action=kill]").click()
    dashboard.confirm("Kill dark_mode?")
    text = _message(dashboard, "dashboard-msg", "error")
    assert "Nothing was overwritten" in text and 'document: "on" → {"enabled":"on","owner":"team-ui"}' in text
    assert dashboard.record("dark_mode") == (2, {"enabled": "on", "owner": "team-ui"})


def test_your_own_save_shows_no_changed_while_editing_banner(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/pro_reports")
    dashboard.wait_live()
    version, document = dashboard.record("pro_reports")
    for attempt in range(1, 4):
        text = dashboard.css("#doc-text")
        document["description"] = f"edit {attempt}"
        text.clear()
        text.send_keys(json.dumps(document))
        dashboard.css("#document-panel button[type=submit]").click()
        # The editor is re-rendered at the new version once the echo and the answer are in.
        dashboard.wait(
            lambda d, v=version + attempt: f"(version {v})" in d.find_element(By.ID, "document-panel").text
        )
        assert dashboard.css("#doc-msg").text == f"Saved as version {version + attempt}."
        assert not dashboard.css("#changed-banner").is_displayed()
    assert dashboard.record("pro_reports") == (version + 3, document)


# --------------------------------------------------------------------------- the event stream


def test_changes_made_while_disconnected_appear_after_the_reconnect(dashboard: Dashboard) -> None:
    dashboard.login()
    assert "25%" in dashboard.row("new_checkout").text
    port = dashboard.server.port
    dashboard.server.stop()
    dashboard.wait(lambda d: d.find_element(By.ID, "live-state").get_attribute("data-state") == "down")
    _set_elsewhere(dashboard, "new_checkout", 12)  # while the page is cut off
    dashboard.server = ServerThread(dashboard.app, port=port)
    dashboard.wait_live()
    dashboard.wait(lambda d: "12%" in dashboard.row("new_checkout").text)


def test_a_revoked_session_shows_signed_out_and_stops_reconnecting(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/dark_mode")
    dashboard.wait_live()
    (token,) = [t for t in dashboard.state.tokens.list() if t.name == "test-admin"]
    dashboard.state.tokens.revoke(token.id)
    _set_elsewhere(dashboard, "legacy_search", "on")  # the stream notices at its next event
    dashboard.wait(lambda d: d.find_element(By.ID, "live-state").get_attribute("data-state") == "signed-out")
    assert dashboard.css("#live-state").text.startswith("Signed out")
    link = dashboard.css("#sign-in")
    assert (link.get_attribute("href") or "").endswith("/login")
    assert dashboard.driver.execute_script("return document.readyState") == "complete"


def test_the_stream_is_closed_when_leaving_a_page(dashboard: Dashboard) -> None:
    dashboard.login()
    broker = dashboard.state.events
    for i in range(8):  # Chrome allows 6 connections per host: leaked streams would stall the 7th page
        dashboard.open("/flags/dark_mode" if i % 2 else "/")
        dashboard.wait_live()
        # Only this page's stream is open: the previous page closed its own.
        dashboard.wait(lambda d: broker.subscribers == 1, timeout=10, message=f"navigation {i + 1}")


# --------------------------------------------------------------------------- kill, enable, confirmations


def test_killing_an_on_flag_shows_killed_and_enable_brings_it_back(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.row("dark_mode").find_element(By.CSS_SELECTOR, "button[data-action=kill]").click()
    dashboard.confirm("Kill dark_mode?")
    dashboard.wait(lambda d: dashboard.badge("dark_mode") == "Killed")
    assert dashboard.record("dark_mode") == (2, {"enabled": False, "everyone": True})
    _click(dashboard, "#flag-dark_mode button[data-action=enable]")
    dashboard.confirm("Enable dark_mode?")
    dashboard.wait(lambda d: dashboard.badge("dark_mode") == "On")
    assert dashboard.record("dark_mode") == (3, "on")  # exactly the document from before the kill


def test_rollback_enable_and_remove_user_ask_first(dashboard: Dashboard) -> None:
    response = dashboard.api("PATCH", "/flags/beta_dashboard", {"op": "kill"})
    assert response.status_code == 200, response.text
    dashboard.login()
    dashboard.open("/flags/beta_dashboard")
    dashboard.wait_live()
    before = dashboard.record("beta_dashboard")
    dashboard.css("button[data-action=rollback][data-version='1']").click()
    _cancel(dashboard, "Roll back beta_dashboard to version 1?")
    dashboard.css("#state-panel button[data-action=enable]").click()
    _cancel(dashboard, "Enable beta_dashboard?")
    dashboard.css("button[aria-label='Remove user alice']").click()
    _cancel(dashboard, "Remove user alice from beta_dashboard?")
    assert dashboard.record("beta_dashboard") == before


def test_the_user_box_splits_ids_says_already_there_and_refuses_blank(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/beta_dashboard")
    dashboard.wait_live()
    _type(dashboard, "#add-users", "erin, frank", submit=True)
    assert _message(dashboard, "targets-msg", "ok") == "Added erin, frank (version 2)."
    assert dashboard.record("beta_dashboard")[1]["users"] == ["alice", "erin", "frank"]
    dashboard.wait(lambda d: "frank" in d.find_element(By.ID, "users-list").text)

    _type(dashboard, "#add-users", "erin", submit=True)
    dashboard.wait(lambda d: "already there" in d.find_element(By.ID, "targets-msg").text)
    assert dashboard.css("#targets-msg").text == "erin is already there: nothing changed."
    assert dashboard.record("beta_dashboard")[0] == 2

    _type(dashboard, "#add-users", "   ", submit=True)
    dashboard.wait(lambda d: d.find_element(By.ID, "targets-msg").text.startswith("Type a user id"))
    assert "error" in (dashboard.css("#targets-msg").get_attribute("class") or "")
    assert dashboard.record("beta_dashboard")[0] == 2


def test_the_percentage_box_of_an_on_flag_shows_100(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/dark_mode")
    assert dashboard.css("#pct-number").get_attribute("value") == "100"
    assert dashboard.css("#pct-range").get_attribute("value") == "100"
    assert "On for everyone" in dashboard.css("#rollout-panel").text


# --------------------------------------------------------------------------- layout and size


@pytest.fixture(name="phone")
def phone_fixture(dashboard: Dashboard) -> Iterator[Dashboard]:
    size = dashboard.driver.get_window_size()
    dashboard.driver.set_window_size(375, 812)
    try:
        yield dashboard
    finally:
        dashboard.driver.set_window_size(size["width"], size["height"])


@pytest.mark.parametrize("path", ["/", "/flags/checkout_button", "/flags/beta_dashboard", "/changes"])
def test_pages_are_usable_at_375_px(phone: Dashboard, path: str) -> None:
    phone.login()
    phone.open(path)
    inner = phone.driver.execute_script("return window.innerWidth")
    assert inner <= 400
    width = phone.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= inner, f"{path} is {width}px wide in a {inner}px window"
    if path == "/":
        kill = phone.row("dark_mode").find_element(By.CSS_SELECTOR, "button[data-action=kill]")
        right = phone.driver.execute_script("return arguments[0].getBoundingClientRect().right", kill)
        assert kill.is_displayed() and right <= inner


def test_a_200k_user_flag_page_is_small_and_paged(dashboard: Dashboard) -> None:
    users = [f"user-{i:06d}" for i in range(200_000)]
    _set_elsewhere(dashboard, "big", {"users": users, "owner": "team-scale"})
    request = urllib.request.Request(
        dashboard.url + "/flags/big", headers={"Authorization": f"Bearer {dashboard.token}"}
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        html = response.read()
    assert len(html) < 200_000, f"{len(html)} bytes of HTML"
    assert b"Showing 1\xe2\x80\x93100 of 200,000 users" in html

    dashboard.login()
    dashboard.open("/flags/big")
    items = dashboard.driver.find_elements(By.CSS_SELECTOR, "#users-list li")
    assert [i.get_attribute("data-member") for i in items] == users[:100]
    dashboard.css("#users-pager a[rel=next]").click()
    dashboard.wait(lambda d: "page 2 of 2,000" in d.find_element(By.ID, "users-range").text)
    items = dashboard.driver.find_elements(By.CSS_SELECTOR, "#users-list li")
    assert [i.get_attribute("data-member") for i in items] == users[100:200]
    # Adding a user still works on a flag too large to carry in the page.
    _type(dashboard, "#add-users", "zoe", submit=True)
    assert _message(dashboard, "targets-msg", "ok") == "Added zoe (version 2)."
    assert dashboard.record("big")[1]["users"][-1] == "zoe"
    # The history's diff of a large document names what changed, not 200,000 lines.
    dashboard.wait(
        lambda d: (
            '+users: "zoe"' in (d.find_element(By.ID, "history-panel").get_attribute("textContent") or "")
        )
    )
