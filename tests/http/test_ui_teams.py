"""Teams in real headless Chromium: logging in with a password, switching environments,
roles per environment (no write controls where the role cannot write; a write in the
environment that allows it lands in that environment's store only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from flagstaff.admin import Admin
from flagstaff.http.app import create_app
from flagstaff.http.roles import Role
from flagstaff.stores import open_store
from tests._support.browser import EXAMPLES, Dashboard, browser_fixture  # noqa: F401 (fixtures)
from tests._support.http_server import ServerThread, make_admin_token

PASSWORD = "correct horse battery"


@pytest.fixture(name="teams")
def teams_fixture(browser: WebDriver, tmp_path: Path) -> Iterator[Dashboard]:
    """Two environments seeded alike (production the default), a viewer-in-production,
    editor-in-staging user ``ed``."""
    urls = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("production", "staging")}
    for url in urls.values():
        store = open_store(url)
        try:
            Admin(store, author="seed").import_documents(json.loads(EXAMPLES.read_text()))
        finally:
            store.close()
    app = create_app(urls, token_db=str(tmp_path / "flags.db.tokens"))
    envs = app.state.environments
    state = envs.states["production"]
    state.users.add("ed", PASSWORD, {"production": Role.VIEWER, "staging": Role.EDITOR})
    server = ServerThread(app)
    dashboard = Dashboard(
        browser, server.url, make_admin_token(state), urls["production"], tmp_path / "production.db",
        state, server, app,
    )  # fmt: skip
    try:
        yield dashboard
    finally:
        browser.get("about:blank")
        browser.delete_all_cookies()
        server.stop()
        envs.close()


def _log_in(d: Dashboard, name: str, password: str) -> None:
    d.open("/login")
    d.css("#username").send_keys(name)
    d.css("#password").send_keys(password)
    d.css("#password-login button[type=submit]").click()


def test_password_login_switch_environments_and_roles_per_environment(teams: Dashboard) -> None:
    d = teams
    _log_in(d, "ed", "not the password")
    alert = d.wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "[role=alert]"))
    assert "wrong password" in alert[0].text
    _log_in(d, "ed", PASSWORD)
    d.wait(lambda drv: drv.find_element(By.TAG_NAME, "h1").text == "Flags")
    d.wait_live()
    switcher = d.css("nav.envs")
    assert [a.text for a in switcher.find_elements(By.TAG_NAME, "a")] == ["production", "staging"]
    assert d.css("nav.envs a[aria-current]").text == "production"
    assert "ed (viewer)" in d.css(".who").text
    # A viewer in production: the flags, and no kill switch.
    assert "dark_mode" in d.visible_rows()
    assert d.driver.find_elements(By.CSS_SELECTOR, "button[data-action=kill]") == []

    d.css("nav.envs a[data-env=staging]").click()
    d.wait(lambda drv: drv.current_url.endswith("/envs/staging/"))
    d.wait_live()
    assert d.css("nav.envs a[aria-current]").text == "staging"
    assert "ed (editor)" in d.css(".who").text
    # An editor in staging: kill there, through the staging API, and only staging changes.
    d.row("beta_dashboard").find_element(By.CSS_SELECTOR, "button[data-action=kill]").click()
    d.confirm("Kill beta_dashboard?")
    d.wait(lambda drv: d.badge("beta_dashboard") == "Killed")
    staging = open_store(d.store_url.replace("production", "staging"))
    try:
        record = staging.get("beta_dashboard")
        assert record is not None and json.loads(record.raw)["enabled"] is False
        assert staging.history("beta_dashboard", limit=1)[0].author.startswith("ed [")
    finally:
        staging.close()
    _, production = d.record("beta_dashboard")
    assert production.get("enabled", True) is True

    # Back to production with the switcher: still no write control there.
    d.css("nav.envs a[data-env=production]").click()
    d.wait(lambda drv: drv.find_element(By.CSS_SELECTOR, "nav.envs a[aria-current]").text == "production")
    assert d.badge("beta_dashboard") == "Partial"
    assert d.driver.find_elements(By.CSS_SELECTOR, "button[data-action=kill]") == []


def test_promote_from_the_flag_page_refuses_a_stale_destination(teams: Dashboard) -> None:
    d = teams
    staging = d.app.state.environments.states["staging"]
    production = d.app.state.environments.states["production"]
    staging.admin.set("dark_mode", {"percentage": 40})
    d.driver.get(f"{d.url}/login?token={d.token}")
    d.open("/envs/staging/flags/dark_mode")
    d.wait(lambda drv: drv.find_elements(By.ID, "promote"))
    d.css("#promote button[type=submit]").click()
    diff = d.wait(lambda drv: drv.find_element(By.ID, "promote-diff").text or None)
    assert '+  "percentage": 40' in diff
    summary = d.css("#promote-summary").text
    assert summary.startswith("staging version 2") and "blast radius: nothing ingested" in summary

    # Someone changes production after the diff was shown: the promotion is refused, and the new
    # difference (with their change) replaces the old one.
    production.admin.set("dark_mode", {"percentage": 5})
    before = production.store.get("dark_mode")
    d.css("#promote-confirm").click()
    d.wait(lambda drv: "Changed since you looked" in drv.find_element(By.ID, "promote-msg").text)
    assert '-  "percentage": 5' in d.css("#promote-diff").text
    assert production.store.get("dark_mode") == before

    # Promoting again, from the new diff, goes through.
    d.css("#promote-confirm").click()
    d.wait(lambda drv: "Promoted to production" in drv.find_element(By.ID, "promote-msg").text)
    record = production.store.get("dark_mode")
    assert record is not None and json.loads(record.raw) == {"percentage": 40}
