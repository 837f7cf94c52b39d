"""The dashboard fits a 1366x768 laptop screen; the screenshot in the docs.

``FLAGSTAFF_UPDATE_SCREENSHOT=1 pytest tests/http/test_ui_layout.py`` rewrites
``docs/img/dashboard.png``; without it the screenshot goes to a temporary
directory, so running the suite never changes a committed file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests._support.browser import HEIGHT, ROOT, WIDTH, Dashboard, browser_fixture, dashboard_fixture  # noqa: F401 (fixtures)

SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _no_horizontal_scroll(dashboard: Dashboard) -> None:
    width = dashboard.driver.execute_script("return document.documentElement.scrollWidth")
    inner = dashboard.driver.execute_script("return window.innerWidth")
    assert width <= inner, f"the page is {width}px wide in a {inner}px window"


@pytest.mark.parametrize("path", ["/", "/flags/checkout_button", "/changes"])
def test_pages_fit_a_laptop_screen_without_sideways_scrolling(dashboard: Dashboard, path: str) -> None:
    dashboard.login()
    dashboard.open(path)
    assert dashboard.driver.execute_script("return window.innerWidth") <= WIDTH
    _no_horizontal_scroll(dashboard)
    # Every form control has a label a screen reader can read.
    unlabelled = dashboard.driver.execute_script(
        """
        return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
          .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
          .map(el => el.outerHTML);
        """
    )
    assert unlabelled == []


def test_dashboard_screenshot(dashboard: Dashboard, tmp_path: Path) -> None:
    dashboard.backdate("beta_dashboard", 45)  # a stale temporary flag, as a real list has
    response = dashboard.api("PATCH", "/flags/new_checkout", {"op": "set_percentage", "percentage": 40})
    assert response.status_code == 200, response.text
    dashboard.login()
    assert dashboard.driver.find_element(By.ID, "flag-rows").is_displayed()
    update = os.environ.get("FLAGSTAFF_UPDATE_SCREENSHOT") == "1"
    target = SCREENSHOT if update else tmp_path / "dashboard.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    assert dashboard.driver.save_screenshot(str(target))
    width, height = _png_size(target)
    assert [width, height] == dashboard.driver.execute_script(
        "return [window.innerWidth * devicePixelRatio, window.innerHeight * devicePixelRatio]"
    )
    assert width <= WIDTH and height <= HEIGHT
