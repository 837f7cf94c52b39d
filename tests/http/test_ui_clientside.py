"""docs/clientside.md's JavaScript, as written there, in real headless Chromium: a page served
from one loopback origin calls a flagstaff server on another (CORS, the ETag round trip), and
a page from an origin the server does not allow is refused by the browser."""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path
from typing import Any

from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from flagstaff.http.app import Settings, create_app
from flagstaff.http.clientside import ClientSide
from tests._support.browser import WAIT, browser_fixture  # noqa: F401 (fixture)
from tests._support.http_server import ServerThread

DOC = Path(__file__).resolve().parents[2] / "docs" / "clientside.md"
FLAGS: dict[str, Any] = {
    "new_header": {"client_visible": True, "users": ["alice"]},
    "banner": {"client_visible": True, "enabled": "on", "values": {"on": {"color": "#00f"}}},
    "secret_pricing": {"users": ["alice"]},
}


def doc_blocks() -> list[str]:
    return re.findall(r"```js\n(.*?)```", DOC.read_text(), re.S)


class PageServer:
    """Serves one HTML page (``body``, set once the page is known) at / from its own origin."""

    def __init__(self) -> None:
        outer = self
        self.body = b""

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def page(server_url: str, key: str) -> str:
    class_block, usage = doc_blocks()
    usage = usage.replace("https://flags.example.com", server_url).replace("fsc_1a2b3c4d_REPLACE_ME", key)
    return f"""<!doctype html><html><head><meta charset="utf-8"></head><body>
<script type="module">
try {{
{class_block}
{usage}
  const changed = await flags.refresh();
  window.flagstaffResult = {{
    header: document.body.classList.contains("new-header"),
    banner: banner,
    hidden: flags.isEnabled("secret_pricing"),
    fallback: flags.value("secret_pricing", "fallback"),
    changedOnRecheck: changed,
    etag: flags.etag,
  }};
}} catch (e) {{
  window.flagstaffResult = {{ error: String(e) }};
}}
</script></body></html>"""


def run_page(browser: WebDriver, tmp_path: Path, *, allow_page: bool) -> dict[str, Any]:
    page_server = PageServer()
    origin = page_server.url if allow_page else "https://elsewhere.example"
    app = create_app(
        f"sqlite:///{tmp_path}/flags.db", settings=Settings(clientside=ClientSide(origins=(origin,)))
    )
    state = app.state.flagstaff
    try:
        for name, document in FLAGS.items():
            state.admin.set(name, document)
        _, key = state.client_keys.create("web")
        with ServerThread(app) as server:
            page_server.body = page(server.url, key).encode()
            browser.get(page_server.url + "/")
            result: dict[str, Any] = _wait_result(browser)
            browser.get("about:blank")
            return result
    finally:
        page_server.close()
        state.close()


def _wait_result(browser: WebDriver) -> dict[str, Any]:
    found: dict[str, Any] = WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script("return window.flagstaffResult || null")
    )
    return found


def test_the_documented_snippet_runs_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    result = run_page(browser, tmp_path, allow_page=True)
    assert "error" not in result, result
    assert result["header"] is True  # alice is in new_header
    assert result["banner"] == {"color": "#00f"}
    assert result["hidden"] is False and result["fallback"] == "fallback"  # not client-visible
    assert result["changedOnRecheck"] is False  # the second refresh was a 304
    assert result["etag"], "the ETag must be exposed to the page (CORS)"


def test_a_page_from_an_origin_not_allowed_is_refused(browser: WebDriver, tmp_path: Path) -> None:
    result = run_page(browser, tmp_path, allow_page=False)
    assert "error" in result and "Failed to fetch" in result["error"]
