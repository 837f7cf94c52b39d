"""The flag list's "Evaluations (24 h)" column in real headless Chromium: absent without usage,
then filled by a real recorder posting its counts to the running server's ingest endpoint."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from flagstaff.client import Client, Options
from flagstaff.exposures import Exposed, HttpSink, Recorder, RecorderOptions
from flagstaff.stores import open_store
from tests._support.browser import Dashboard, browser_fixture, dashboard_fixture  # noqa: F401 (fixtures)


def test_the_usage_column_shows_what_clients_counted(dashboard: Dashboard) -> None:
    # Exposures only: the event store (and its usage table) exists, but no usage was reported.
    exposure = {"kind": "exposure", "time": 1_800_000_000, "key": "u1", "flag": "new_checkout"}
    assert dashboard.api("POST", "/ingest", {"events": [exposure]}).status_code == 200
    dashboard.login()
    assert dashboard.driver.find_elements(By.ID, "usage-head") == []  # no usage counted yet
    assert len(dashboard.row("dark_mode").find_elements(By.TAG_NAME, "td")) == 6

    # A service's client counts its checks and posts them to this server.
    recorder = Recorder(
        HttpSink(dashboard.url, dashboard.token), RecorderOptions(usage=True, flags=Exposed.NONE)
    )
    store = open_store(dashboard.store_url)
    try:
        with Client(store, Options(timeout=10, exposures=recorder)) as client:
            for i in range(1234):
                client.is_enabled("new_checkout", f"u{i}")
            client.is_enabled("dark_mode", "u1")
        recorder.close()
    finally:
        store.close()
    stats = recorder.stats()
    assert (stats.written, stats.failed, stats.dropped) == (2, 0, 0)

    dashboard.open("/")
    assert dashboard.css("#usage-head").get_attribute("textContent") == "Evaluations (24 h)"
    cell = dashboard.row("new_checkout").find_element(By.CSS_SELECTOR, "td.usage")
    assert cell.get_attribute("data-evaluations") == "1234"
    assert cell.text.splitlines() == ["1,234", "last seen just now"]
    assert dashboard.row("dark_mode").find_element(By.CSS_SELECTOR, "td.usage").text.startswith("1\n")
    legacy = dashboard.row("legacy_search").find_element(By.CSS_SELECTOR, "td.usage")
    assert legacy.text.splitlines() == ["0", "never seen"]
    assert dashboard.css("#no-match td").get_attribute("colspan") == "8"
