"""The dashboard's segment pages and a flag's targeting panel: as HTML (access, escaping,
links) and in real headless Chromium (edit with validation messages, delete refused
while in use, create)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from flagstaff.admin import Admin
from flagstaff.http.app import create_app
from flagstaff.http.tokens import Permission
from flagstaff.stores import open_store
from tests._support.browser import Dashboard, browser_fixture, dashboard_fixture  # noqa: F401 (fixtures)
from tests._support.http_server import ServerThread, make_token

HOSTILE = '<script>alert("x")</script>'

SEGMENTS: dict[str, Any] = {
    "segment:staff": {"description": "Internal staff", "owner": "platform", "groups": ["employee"]},
    "segment:fraud": {"description": HOSTILE, "users": ["mallory"], "tags": ["<i>"]},
    "segment:unused": {"users": ["nobody"]},
}
FLAGS: dict[str, Any] = {
    "staff_preview": {
        "description": "targeting rules in order",
        "deny": {"users": ["banned-1"], "segments": ["fraud"]},
        "prerequisites": ["dark_mode", {"flag": "checkout_button", "variant": "green"}],
        "targeting": [
            {"name": "beta 10%", "groups": ["beta"], "serve": {"percentage": 10}},
            {"name": HOSTILE, "segments": ["staff"], "serve": "on"},
            {
                "when": [{"attribute": "plan", "op": "in", "value": ["pro", "<b>"]}],
                "serve": {"variant": "big"},
            },
        ],
        "default": "off",
        "values": {"big": {"max_items": 50}, "on": {"note": "</script><b>"}},
    },
    "staff_only": {"targeting": [{"segments": ["staff"], "serve": "on"}]},
}


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass
class Server:
    url: str
    state: Any

    def get(self, path: str, scope: Permission = Permission.WRITE) -> Page:
        request = urllib.request.Request(self.url + path, headers={"Accept": "text/html"})
        request.add_header("Authorization", f"Bearer {make_token(self.state, scope)}")
        try:
            with urllib.request.build_opener(_NoRedirect).open(request, timeout=30) as response:
                return Page(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as exc:
            return Page(exc.code, dict(exc.headers), exc.read().decode())


def seed(admin: Admin) -> None:
    for key, document in SEGMENTS.items():
        admin.set(key, document)
    for name, document in FLAGS.items():
        admin.set(name, document)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path / 'flags.db'}"
    store = open_store(url)
    try:
        admin = Admin(store, author="seed")
        examples = Path(__file__).resolve().parents[2] / "examples" / "flags.json"
        admin.import_documents(json.loads(examples.read_text()))
        seed(admin)
    finally:
        store.close()
    app = create_app(url, token_db=str(tmp_path / "tokens.db"))
    thread = ServerThread(app)
    try:
        yield Server(thread.url, app.state.flagstaff)
    finally:
        thread.stop()
        app.state.flagstaff.close()


# --------------------------------------------------------------------------- HTML


def test_the_segments_page_lists_each_with_its_description_and_users(server: Server) -> None:
    page = server.get("/segments")
    assert page.status == 200
    assert '<a href="/segments" aria-current="page">Segments</a>' in page.text
    staff = page.text.split('id="segment-staff"')[1].split("</tr>")[0]
    assert "Internal staff" in staff and ">2 flags<" in staff
    assert 'title="staff_only, staff_preview"' in staff
    assert ">0 flags<" in page.text.split('id="segment-unused"')[1].split("</tr>")[0]
    assert ">1 flag<" in page.text.split('id="segment-fraud"')[1].split("</tr>")[0]
    # The flag list and the flags API know no segment.
    flags = server.get("/")
    assert 'data-flag="segment:staff"' not in flags.text and 'href="/segments"' in flags.text


def test_a_segment_page_shows_its_document_users_and_history(server: Server) -> None:
    page = server.get("/segments/staff")
    assert page.status == 200
    assert "<h1>Segment staff</h1>" in page.text
    used = page.text.split('id="used-by-list"')[1].split("</ul>")[0]
    assert '<a href="/flags/staff_only">staff_only</a>' in used
    assert '<a href="/flags/staff_preview">staff_preview</a>' in used
    assert "&#34;employee&#34;" in page.text.split('id="doc-text"')[1].split("</textarea>")[0]
    assert 'data-action="delete-segment"' in page.text
    read = server.get("/segments/staff", Permission.READ)
    assert 'data-action="delete-segment"' not in read.text and "readonly" in read.text
    assert server.get("/segments/nope").status == 404
    moved = server.get("/flags/segment:staff")
    assert moved.status == 303 and moved.headers["location"].endswith("/segments/staff")


def test_the_changes_page_links_segments_to_their_page_without_rollback(server: Server) -> None:
    assert server.state.admin.set("segment:staff", {**SEGMENTS["segment:staff"], "users": ["x"]}).changed
    page = server.get("/changes")
    row = page.text.split('<a href="/segments/staff">segment staff</a>')[1].split("</tr>")[0]
    assert 'data-action="rollback"' not in row


def test_the_flag_page_shows_deny_prerequisites_rules_default_and_values(server: Server) -> None:
    page = server.get("/flags/staff_preview")
    assert page.status == 200
    panel = page.text.split('id="targeting-panel"')[1].split("</section>")[0]
    deny = panel.split('id="deny-list"')[1].split("</ul>")[0]
    assert (
        "users: banned-1" in deny and '<a href="/segments/fraud" data-segment-link="fraud">fraud</a>' in deny
    )
    prerequisites = panel.split('id="prerequisite-list"')[1].split("</ol>")[0]
    assert '<li><a href="/flags/dark_mode">dark_mode</a> is on</li>' in prerequisites
    assert (
        '<li><a href="/flags/checkout_button">checkout_button</a> serves variant green</li>' in prerequisites
    )
    rules = panel.split('id="rule-list"')[1].split("</ol>")[0].split("<li")[1:]
    assert len(rules) == 3
    assert "<strong>beta 10%</strong>" in rules[0] and "groups: beta" in rules[0]
    assert "on for 10%" in rules[0]
    assert 'href="/segments/staff"' in rules[1] and '<span class="serve">on</span>' in rules[1]
    assert "plan in [&#34;pro&#34;, &#34;&lt;b&gt;&#34;]" in rules[2] and "variant big" in rules[2]
    assert 'Otherwise (default): <span class="serve">off</span>' in panel
    values = panel.split('id="value-table"')[1].split("</table>")[0]
    assert "<td>big</td><td><code>{&#34;max_items&#34;: 50}</code></td>" in values


def test_hostile_text_in_segments_and_rules_is_escaped(server: Server) -> None:
    for path in ("/segments", "/segments/fraud", "/flags/staff_preview", "/changes"):
        page = server.get(path)
        assert page.status == 200, path
        assert HOSTILE not in page.text, path
        assert "<i>" not in page.text and "<b>" not in page.text, path
    assert "&lt;script&gt;" in server.get("/segments/fraud").text
    flag = server.get("/flags/staff_preview").text
    assert "&lt;script&gt;" in flag.split('id="rule-list"')[1]
    data = flag.split('id="flag-data">')[1].split("\n")[0]
    assert "</script>" not in data[: -len("</script>")]


# --------------------------------------------------------------------------- browser


def _message(dashboard: Dashboard, msg_id: str, kind: str) -> str:
    def shown(driver: WebDriver) -> str:
        el = driver.find_element(By.ID, msg_id)
        return el.text if kind in (el.get_attribute("class") or "").split() else ""

    return dashboard.wait(shown)


def _type(field: WebElement, text: str) -> None:
    field.clear()
    field.send_keys(text)


def _segment(dashboard: Dashboard, name: str) -> tuple[int, Any]:
    return dashboard.record(f"segment:{name}")


@pytest.fixture
def seeded(dashboard: Dashboard) -> Dashboard:
    seed(dashboard.state.admin)
    return dashboard


def test_nav_leads_to_segments_and_a_segment(seeded: Dashboard) -> None:
    seeded.login()
    seeded.driver.find_element(By.LINK_TEXT, "Segments").click()
    seeded.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Segments")
    row = seeded.css("#segment-staff")
    assert "Internal staff" in row.text and "2 flags" in row.text
    row.find_element(By.LINK_TEXT, "staff").click()
    seeded.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Segment staff")
    seeded.wait_live()
    assert "staff_only" in seeded.css("#used-by-list").text


def test_a_bad_segment_document_is_refused_with_the_message_then_saved(seeded: Dashboard) -> None:
    seeded.login()
    seeded.open("/segments/staff")
    seeded.wait_live()
    version, before = _segment(seeded, "staff")
    editor = seeded.css("#doc-text")
    _type(editor, json.dumps({**before, "grups": ["x"]}))
    seeded.css("#document-panel button[type=submit]").click()
    text = _message(seeded, "doc-msg", "error")
    assert text.startswith("Not saved")
    assert "grups" in text and "groups" in text  # the path, and what was meant
    assert _segment(seeded, "staff") == (version, before)

    _type(editor, "{not json")
    seeded.css("button[data-action=validate-segment]").click()
    seeded.wait(lambda d: "not valid JSON" in _message(seeded, "doc-msg", "error"))

    _type(editor, json.dumps({**before, "users": ["erin"]}))
    seeded.css("button[data-action=validate-segment]").click()
    assert _message(seeded, "doc-msg", "ok").startswith("Valid")
    assert _segment(seeded, "staff")[0] == version
    seeded.css("#document-panel button[type=submit]").click()
    # The message before was "Valid…" (also ok): wait for the save's own.
    saved = seeded.wait(
        lambda d: _message(seeded, "doc-msg", "ok").startswith("Saved") and _message(seeded, "doc-msg", "ok")
    )
    assert saved == f"Saved as version {version + 1}."
    assert _segment(seeded, "staff") == (version + 1, {**before, "users": ["erin"]})
    seeded.wait(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "#segment-panel [data-field=version]").text == str(version + 1)
        )
    )


def test_a_stale_segment_edit_is_refused(seeded: Dashboard) -> None:
    seeded.login()
    seeded.open("/segments/staff")
    seeded.wait_live()
    version, before = _segment(seeded, "staff")
    _type(seeded.css("#doc-text"), json.dumps({**before, "users": ["mine"]}))
    theirs = seeded.api("PUT", "/segments/staff", {"document": {**before, "users": ["theirs"]}})
    assert theirs.status_code == 200
    seeded.css("#document-panel button[type=submit]").click()
    text = _message(seeded, "doc-msg", "error")
    assert "changed the segment meanwhile" in text and f"version {version + 1}" in text
    assert _segment(seeded, "staff")[1]["users"] == ["theirs"]


def test_deleting_a_segment_in_use_is_refused_with_the_flags_listed(seeded: Dashboard) -> None:
    seeded.login()
    seeded.open("/segments/staff")
    seeded.wait_live()
    seeded.css("button[data-action=delete-segment]").click()
    seeded.confirm("Delete segment staff?")
    text = _message(seeded, "segment-msg", "error")
    assert text.startswith("Not deleted")
    assert "staff_only" in text and "staff_preview" in text
    assert _segment(seeded, "staff")[0] == 1

    seeded.open("/segments/unused")
    seeded.wait_live()
    seeded.css("button[data-action=delete-segment]").click()
    seeded.confirm("Delete segment unused?")
    seeded.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Segments")
    assert seeded.api("GET", "/segments/unused").status_code == 404
    assert not seeded.driver.find_elements(By.ID, "segment-unused")


def test_create_a_segment_from_the_list(seeded: Dashboard) -> None:
    seeded.login()
    seeded.open("/segments")
    seeded.wait_live()
    _type(seeded.css("#new-segment-name"), "staff")
    _type(seeded.css("#new-segment-doc"), json.dumps({"users": ["x"]}))
    seeded.css("#new-segment-panel button[type=submit]").click()
    assert "exists already" in _message(seeded, "new-segment-msg", "error")
    assert _segment(seeded, "staff")[0] == 1

    _type(seeded.css("#new-segment-name"), "qa-team")
    _type(seeded.css("#new-segment-doc"), json.dumps({"description": "QA", "users": ["qa-1"]}))
    seeded.css("#new-segment-panel button[type=submit]").click()
    seeded.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Segment qa-team")
    assert _segment(seeded, "qa-team") == (1, {"description": "QA", "users": ["qa-1"]})


def test_the_flag_page_links_the_segments_its_rules_name(seeded: Dashboard) -> None:
    seeded.login()
    seeded.open("/flags/staff_preview")
    rules = seeded.driver.find_elements(By.CSS_SELECTOR, "#rule-list > li")
    assert len(rules) == 3
    assert rules[1].text.startswith(HOSTILE)  # shown as text, not run
    rules[1].find_element(By.LINK_TEXT, "staff").click()
    seeded.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Segment staff")
