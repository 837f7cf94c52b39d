"""The dashboard's change request pages in real headless Chromium, on a server that
requires approval: propose from the flag page, approve and apply as someone else, the
proposer's missing approve button, a stale apply refused with what changed, reject."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from flagstaff.http.app import Settings
from flagstaff.http.tokens import Permission
from tests._support.browser import WAIT, Dashboard, browser_fixture, make_dashboard  # noqa: F401 (fixtures)
from tests._support.http_server import make_token


@pytest.fixture(name="dashboard")
def approval_dashboard(browser: WebDriver, tmp_path: Path) -> Iterator[Dashboard]:
    yield from make_dashboard(browser, tmp_path, Settings(requires_approval=True, schedule_interval=0.2))


def api(d: Dashboard, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{d.url}/api/v1{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def status_of(d: Dashboard) -> str:
    return d.css("#cr-status").text


def test_propose_from_the_flag_page_then_another_approves_and_applies(dashboard: Dashboard) -> None:
    d = dashboard
    d.login()
    d.open("/flags/new_checkout")
    form = d.css("#propose-panel")
    assert "requires approval" in form.text
    # The plain document editor is refused by the server, pointing at change requests.
    text = d.css("#propose-document")
    text.clear()
    text.send_keys('{"percentage": 60}')
    d.css("#propose-comment").send_keys("more checkout")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    d.wait(lambda drv: "/change-requests/" in drv.current_url and drv.find_elements(By.ID, "cr-status"))
    assert status_of(d) == "pending"
    assert "(you)" in d.css("#cr-proposer").text
    assert d.driver.find_elements(By.CSS_SELECTOR, "[data-cr-action=approve]") == []  # not one's own
    assert "someone else approves it" in d.css("#cr-own").text
    changes = d.css("#cr-changes").text
    assert "percentage" in changes and "25" in changes and "60" in changes
    change_id = int(d.driver.current_url.rsplit("/", 1)[1])
    # The API refuses the proposer's approval too.
    assert api(d, d.token, "POST", f"/change-requests/{change_id}/approve")[0] == 403
    # Bob (another identity, approve scope) approves; the proposer's page then offers apply.
    bob = make_token(d.state, Permission.APPROVE, "bob")
    assert api(d, bob, "POST", f"/change-requests/{change_id}/approve")[0] == 200
    d.open(f"/change-requests/{change_id}")
    assert status_of(d) == "approved" and "bob" in d.css("#cr-approver").text
    d.css("[data-cr-action=apply]").click()
    d.wait(lambda _: status_of(d) == "applied")
    version, document = d.record("new_checkout")
    assert document == {"percentage": 60} and version == 2
    # The list shows it applied, with who approved it.
    d.open("/change-requests")
    row = d.css(f"#cr-{change_id}")
    assert row.get_attribute("data-status") == "applied" and "bob" in row.text


def test_approve_in_the_page_then_a_stale_apply_shows_what_changed(dashboard: Dashboard) -> None:
    d = dashboard
    alice = make_token(d.state, Permission.WRITE, "alice")
    status, change = api(d, alice, "POST", "/change-requests", {"flag": "dark_mode", "document": "off"})
    assert status == 201, change
    d.login()
    d.open("/change-requests?status=pending")
    d.css(f"#cr-{change['id']} a").click()
    d.wait(lambda drv: drv.find_elements(By.ID, "cr-status"))
    d.css("[data-cr-action=approve]").click()
    d.wait(lambda _: status_of(d) == "approved")
    assert "test-admin" in d.css("#cr-approver").text
    # Meanwhile the flag is killed (the kill switch writes directly).
    assert api(d, alice, "PATCH", "/flags/dark_mode", {"op": "kill"})[0] == 200
    d.css("[data-cr-action=apply]").click()
    msg = d.wait(
        lambda drv: drv.find_element(By.ID, "cr-msg") if drv.find_element(By.ID, "cr-msg").text else None
    )
    assert "changed after the proposal" in msg.text and msg.get_attribute("data-code") == "stale"
    diff = d.css("#cr-conflict")
    assert diff.is_displayed() and "dark_mode@1" in diff.text and "dark_mode@2" in diff.text
    assert d.record("dark_mode")[0] == 2  # not overwritten
    d.open(f"/change-requests/{change['id']}")
    assert status_of(d) == "failed" and "propose again" in d.css("#cr-note").text


def test_reject_with_a_reason(dashboard: Dashboard) -> None:
    d = dashboard
    alice = make_token(d.state, Permission.WRITE, "alice")
    _, change = api(d, alice, "POST", "/change-requests", {"flag": "legacy_search", "document": "on"})
    d.login()
    d.open(f"/change-requests/{change['id']}")
    d.css("#cr-reason").send_keys("<b>not now</b>")
    d.css("form[data-cr-form=reject] button").click()
    d.wait(lambda _: status_of(d) == "rejected")
    assert d.css("#cr-note").text == "<b>not now</b>"  # escaped, shown as text
    assert d.driver.find_elements(By.CSS_SELECTOR, "[data-cr-action]") == []
