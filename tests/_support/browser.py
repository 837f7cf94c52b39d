"""Fixtures for the dashboard's browser tests: real headless Chromium, a real server.

Selenium drives Debian's ``chromium`` through Debian's ``chromedriver``
(packages ``chromium`` and ``chromium-driver``, installed by ``.ci/run``).
Selenium is the W3C WebDriver reference client; with both binaries given
explicitly it downloads nothing.

Test modules import the fixtures by their function names
(``from browser import browser_fixture, dashboard_fixture``).

``browser`` is one Chromium for the whole session (a start costs seconds);
``dashboard`` is a fresh server per test on a temporary SQLite store seeded
with ``examples/flags.json``, with an admin token to log in with. Every wait is
an explicit condition with a generous timeout (the CI machine has two loaded
cores); nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from flagstaff.admin import Admin
from flagstaff.http.app import Settings, create_app
from flagstaff.stores import open_store
from tests._support.http_server import ServerThread, make_admin_token

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30.0  # seconds; generous for a loaded 2-core machine
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "flags.json"
WIDTH, HEIGHT = 1366, 768

T = TypeVar("T")


@pytest.fixture(scope="session", name="browser")
def browser_fixture() -> Iterator[WebDriver]:
    """Headless Chromium at 1366x768, shared by every browser test."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--disable-background-networking",
        f"--window-size={WIDTH},{HEIGHT}",
        "--force-prefers-reduced-motion",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass(frozen=True)
class ApiResponse:
    status_code: int
    text: str


@dataclass
class Dashboard:
    """A running server, its store, an admin token, and the browser."""

    driver: WebDriver
    url: str
    token: str
    store_url: str
    db_path: Path
    state: Any
    server: ServerThread
    app: Any

    # -- browser ---------------------------------------------------------------

    def login(self) -> None:
        """Open the dashboard through the login link, as a newcomer would."""
        self.driver.get(f"{self.url}/login?token={self.token}")
        self.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Flags")
        self.wait_live()

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)
        self.wait(lambda d: d.execute_script("return document.readyState") == "complete")

    def wait(self, condition: Callable[[WebDriver], T], timeout: float = WAIT, message: str = "") -> T:
        """Wait until ``condition(driver)`` is truthy (stale elements are retried)."""

        def retried(driver: WebDriver) -> T | bool:
            try:
                return condition(driver)
            except WebDriverException as exc:
                # While a page is being replaced, Chromium may answer for an element found in
                # the old document with this "unknown error" rather than a stale-element one.
                if "does not belong to the document" in str(exc.msg):
                    return False
                raise

        wait = WebDriverWait(self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,))
        return wait.until(retried, message)  # type: ignore[return-value]

    def wait_live(self) -> None:
        """Until the page's event stream is open (so no change can slip by)."""
        self.wait(lambda d: d.find_element(By.ID, "live-state").get_attribute("data-state") == "live")

    def css(self, selector: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def row(self, name: str) -> WebElement:
        return self.driver.find_element(By.ID, f"flag-{name}")

    def badge(self, name: str) -> str:
        return self.row(name).find_element(By.CSS_SELECTOR, "td.state .badge").text

    def visible_rows(self) -> list[str]:
        rows = self.driver.find_elements(By.CSS_SELECTOR, "#flag-rows tr[data-flag]")
        return [r.get_attribute("data-flag") or "" for r in rows if r.is_displayed()]

    def confirm(self, expected_title: str, comment: str | None = None) -> None:
        """Answer yes to the open dialog titled ``expected_title``, first typing ``comment``
        in its comment box (which must then be shown)."""
        dialog = self.wait(lambda d: d.find_element(By.ID, "confirm") if _open(d) else None)
        assert dialog is not None
        assert dialog.find_element(By.ID, "confirm-title").text == expected_title
        if comment is not None:
            box = dialog.find_element(By.ID, "confirm-comment")
            assert box.is_displayed(), "the dialog asks no comment"
            box.send_keys(comment)
        dialog.find_element(By.ID, "confirm-ok").click()
        self.wait(lambda d: not _open(d))

    # -- someone else ------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> ApiResponse:
        """A request with the admin token, as another operator or a script would make it."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/api/v1" + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                return ApiResponse(response.status, response.read().decode())
        except urllib.error.HTTPError as exc:
            return ApiResponse(exc.code, exc.read().decode())

    def record(self, name: str) -> tuple[int, Any]:
        """(version, document) straight from the store, not through the server."""
        store = open_store(self.store_url)
        try:
            record = store.get(name)
            assert record is not None, name
            return record.version, json.loads(record.raw)
        finally:
            store.close()

    def backdate(self, name: str, days: float) -> None:
        """Make a flag's recorded changes ``days`` older (to test staleness)."""
        with sqlite3.connect(self.db_path) as conn:
            conn.execute("UPDATE flagstaff_changes SET at = at - ? WHERE name = ?", (days * 86400, name))


def _open(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return document.getElementById('confirm').open"))


def make_dashboard(
    driver: WebDriver, tmp_path: Path, settings: Settings | None = None
) -> Iterator[Dashboard]:
    db = tmp_path / "flags.db"
    store_url = f"sqlite:///{db}"
    store = open_store(store_url)
    try:
        Admin(store, author="seed").import_documents(json.loads(EXAMPLES.read_text()))
    finally:
        store.close()
    app = create_app(store_url, token_db=str(tmp_path / "tokens.db"), settings=settings)
    state = app.state.flagstaff
    token = make_admin_token(state)
    server = ServerThread(app)
    dashboard = Dashboard(driver, server.url, token, store_url, db, state, server, app)
    try:
        yield dashboard
    finally:
        # Leave the page first: its open event stream would hold the server's shutdown.
        driver.get("about:blank")
        driver.delete_all_cookies()
        dashboard.server.stop()  # the test may have restarted it
        state.close()


@pytest.fixture(name="dashboard")
def dashboard_fixture(browser: WebDriver, tmp_path: Path) -> Iterator[Dashboard]:
    yield from make_dashboard(browser, tmp_path)


class Watcher:
    """A separate process following one flag for one user (tests/_support/flag_watcher.py)."""

    def __init__(self, store_url: str, flag: str, user: str) -> None:
        script = Path(__file__).with_name("flag_watcher.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), store_url, flag, user],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def next_line(self, timeout: float = WAIT) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the watcher printed nothing within {timeout} s") from None

    def close(self) -> str:
        """Stop the process (closing its stdin) and return its stderr."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.stderr.read()
