"""Everyday product work in real headless Chromium (issue 16): create, archive, restore and
delete flags; the rule builder and the value editor; the playground; comparing versions
with comments; the paged list; a 375 px window and a keyboard-only path."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from flagstaff.admin import Admin
from flagstaff.stores import open_store
from tests._support.browser import EXAMPLES, Dashboard, browser_fixture, dashboard_fixture  # noqa: F401 (fixtures)


def _message(dashboard: Dashboard, msg_id: str, kind: str) -> str:
    """The text of message ``msg_id`` once it shows a message of ``kind`` (ok, error)."""

    def shown(driver: WebDriver) -> str:
        el = driver.find_element(By.ID, msg_id)
        return el.text if kind in (el.get_attribute("class") or "").split() else ""

    return dashboard.wait(shown)


def _says(dashboard: Dashboard, msg_id: str, text: str) -> None:
    """Wait until message ``msg_id`` reads ``text`` (a message may already show another)."""
    dashboard.wait(lambda d: d.find_element(By.ID, msg_id).text == text, message=f"{msg_id}: {text!r}")


def _type(field: WebElement, text: str) -> None:
    field.clear()
    field.send_keys(text)


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return json.loads(response.text) if response.text else None


def _active(dashboard: Dashboard) -> WebElement:
    return dashboard.driver.switch_to.active_element


def _history_comments(dashboard: Dashboard, name: str) -> list[str | None]:
    entries = _ok(dashboard.api("GET", f"/flags/{name}/history"))["entries"]
    return [e["comment"] for e in entries]


# --------------------------------------------------------------------------- create


def test_create_a_flag_with_the_keyboard_alone(dashboard: Dashboard) -> None:
    dashboard.login()
    summary = dashboard.css("#create-panel summary")
    summary.send_keys(Keys.ENTER)  # opens the form
    dashboard.wait(lambda d: d.find_element(By.ID, "new-name").is_displayed())
    _active(dashboard).send_keys(Keys.TAB)
    assert _active(dashboard).get_attribute("id") == "new-name"
    _active(dashboard).send_keys("new_search")
    _active(dashboard).send_keys(Keys.TAB)
    assert _active(dashboard).get_attribute("id") == "new-kind"
    _active(dashboard).send_keys("ops")  # typing picks the option
    for field, text in (
        ("new-owner", "team-search"),
        ("new-tags", "search, q4"),
        ("new-description", "The new ranker"),
    ):
        _active(dashboard).send_keys(Keys.TAB)
        assert _active(dashboard).get_attribute("id") == field
        _active(dashboard).send_keys(text)
    _active(dashboard).send_keys(Keys.TAB)
    assert _active(dashboard).get_attribute("id") == "new-start"
    _active(dashboard).send_keys(Keys.TAB)
    assert _active(dashboard).get_attribute("id") == "new-comment"
    _active(dashboard).send_keys("for the Q4 search launch")
    _active(dashboard).send_keys(Keys.TAB)
    assert _active(dashboard).text == "Create flag"
    _active(dashboard).send_keys(Keys.ENTER)

    dashboard.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "new_search")
    version, doc = dashboard.record("new_search")
    assert version == 1
    assert doc == {
        "enabled": "off",
        "kind": "ops",
        "owner": "team-search",
        "tags": ["search", "q4"],
        "description": "The new ranker",
    }
    assert _history_comments(dashboard, "new_search") == ["for the Q4 search launch"]
    assert "for the Q4 search launch" in dashboard.css("#history-panel").text


def test_create_refuses_a_taken_or_bad_name_with_the_message(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.css("#create-panel summary").click()
    _type(dashboard.css("#new-name"), "dark_mode")
    dashboard.css("#create-flag button[type=submit]").click()
    text = _message(dashboard, "create-msg", "error")
    assert text.startswith("Not created: a flag named 'dark_mode' already exists")
    assert dashboard.css("#new-name").get_attribute("aria-invalid") == "true"

    _type(dashboard.css("#new-name"), "bad name!")
    dashboard.css("#create-flag button[type=submit]").click()
    dashboard.wait(lambda d: "bad name!" in d.find_element(By.ID, "create-msg").text)
    assert dashboard.record("dark_mode") == (1, "on")
    assert _ok(dashboard.api("GET", "/flags?q=bad"))["flags"] == []


# --------------------------------------------------------------------------- archive, restore, delete


def test_archive_hides_the_flag_and_restore_brings_it_back(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/beta_dashboard")
    dashboard.wait_live()
    _, before = dashboard.record("beta_dashboard")
    _type(dashboard.css("#lifecycle-comment"), "the redesign shipped")
    dashboard.css("[data-editor-action=archive]").click()
    dashboard.confirm("Archive beta_dashboard?")
    dashboard.wait(lambda d: d.find_element(By.ID, "archived-note").is_displayed())
    _, doc = dashboard.record("beta_dashboard")
    assert doc == {**before, "archived": True}
    decision = _ok(
        dashboard.api("POST", "/evaluate", {"flag": "beta_dashboard", "context": {"user_id": "alice"}})
    )
    assert decision["decisions"]["beta_dashboard"]["reason"] == "archived"
    assert "Archived" in dashboard.css("#state-panel").text
    assert "the redesign shipped" in dashboard.css("#history-panel").text

    # The list hides it, says so, and the filter shows it again.
    dashboard.open("/")
    assert "beta_dashboard" not in dashboard.visible_rows()
    assert "1 archived hidden" in dashboard.css("#flag-count").text
    Select(dashboard.css("#f-archived")).select_by_value("only")
    dashboard.wait(lambda d: dashboard.visible_rows() == ["beta_dashboard"])
    assert "archived=only" in dashboard.driver.current_url
    assert dashboard.badge("beta_dashboard") == "Archived"

    dashboard.open("/flags/beta_dashboard")
    dashboard.css("[data-editor-action=restore]").click()
    dashboard.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-editor-action=archive]"))
    assert dashboard.record("beta_dashboard")[1] == before


def test_delete_from_the_flag_page_after_confirming(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/legacy_search")
    dashboard.css("[data-editor-action=delete]").click()
    dialog = dashboard.wait(lambda d: d.find_element(By.ID, "confirm"))
    dashboard.wait(lambda d: d.execute_script("return document.getElementById('confirm').open"))
    dialog.find_element(By.ID, "confirm-cancel").click()  # cancelled: nothing happens
    assert dashboard.record("legacy_search")[1] == "off"
    dashboard.css("[data-editor-action=delete]").click()
    dashboard.confirm("Delete legacy_search?")
    dashboard.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Flags")
    assert dashboard.api("GET", "/flags/legacy_search").status_code == 404
    assert "legacy_search" not in dashboard.visible_rows()


# --------------------------------------------------------------------------- rule builder


def _rules(dashboard: Dashboard) -> list[WebElement]:
    return dashboard.driver.find_elements(By.CSS_SELECTOR, "#rule-rows > li[data-rule-row]")


def test_rule_builder_writes_rules_and_values_and_keeps_the_rest(dashboard: Dashboard) -> None:
    _ok(dashboard.api("PUT", "/segments/staff", {"document": {"groups": ["employee"]}}))
    _ok(
        dashboard.api(
            "POST", "/flags", {"name": "ranker", "document": {"percentage": 5, "owner": "team-search"}}
        )
    )
    dashboard.login()
    dashboard.open("/flags/ranker")
    dashboard.wait_live()
    assert _rules(dashboard) == []

    dashboard.css("[data-editor-action=add-rule]").click()
    rule = _rules(dashboard)[0]
    assert _active(dashboard) == rule.find_element(By.CSS_SELECTOR, "input.rname")
    _active(dashboard).send_keys("pro plans")
    rule.find_element(By.CSS_SELECTOR, "[data-editor-action=add-condition]").click()
    condition = rule.find_element(By.CSS_SELECTOR, "li[data-condition]")
    _type(condition.find_element(By.CSS_SELECTOR, "input.attr"), "plan")
    Select(condition.find_element(By.CSS_SELECTOR, "select.op")).select_by_value("in")
    _type(condition.find_element(By.CSS_SELECTOR, "input.val"), "pro, enterprise")
    rule.find_element(By.XPATH, ".//fieldset[contains(@class,'in-seg')]//label[text()='staff']").click()
    Select(rule.find_element(By.CSS_SELECTOR, "select.serve-kind")).select_by_value("percentage")
    _type(rule.find_element(By.CSS_SELECTOR, "input.pct"), "50")
    Select(dashboard.css("#builder-default-serve")).select_by_value("off")

    dashboard.css("[data-editor-action=add-value]").click()
    row = dashboard.driver.find_elements(By.CSS_SELECTOR, "#value-rows tr")[-1]
    _type(row.find_element(By.CSS_SELECTOR, "input.vkey"), "on")
    Select(row.find_element(By.CSS_SELECTOR, "select.vtype")).select_by_value("json")
    _type(row.find_element(By.CSS_SELECTOR, "input.vval"), '{"color": "blue", "size": 3}')
    _type(dashboard.css("#rules-comment"), "pro plans first")

    dashboard.css("[data-editor-action=check-rules]").click()
    assert _message(dashboard, "rules-msg", "ok").startswith("Valid.")
    assert dashboard.record("ranker")[0] == 1  # a check writes nothing
    dashboard.css("#rules-editor button[type=submit]").click()
    _says(dashboard, "rules-msg", "Saved as version 2.")
    _, doc = dashboard.record("ranker")
    assert doc == {
        "percentage": 5,
        "owner": "team-search",
        "targeting": [
            {
                "name": "pro plans",
                "when": [{"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]}],
                "segments": ["staff"],
                "serve": {"percentage": 50},
            }
        ],
        "default": "off",
        "values": {"on": {"color": "blue", "size": 3}},
    }
    assert _history_comments(dashboard, "ranker")[0] == "pro plans first"
    # The live update re-renders the raw JSON, and does not call our own save someone else's.
    dashboard.wait(lambda d: "pro plans" in (d.find_element(By.ID, "doc-text").get_attribute("value") or ""))
    assert "someone else" not in (dashboard.css("#announcer").get_attribute("textContent") or "")

    # Reloaded, the builder shows what was saved.
    dashboard.open("/flags/ranker")
    rule = _rules(dashboard)[0]
    assert rule.find_element(By.CSS_SELECTOR, "input.rname").get_attribute("value") == "pro plans"
    assert rule.find_element(By.CSS_SELECTOR, "input.val").get_attribute("value") == "pro, enterprise"
    assert (
        rule.find_element(By.CSS_SELECTOR, "fieldset.in-seg input:checked").get_attribute("value") == "staff"
    )


def test_rule_builder_shows_the_parsers_message_and_saves_nothing(dashboard: Dashboard) -> None:
    _ok(dashboard.api("POST", "/flags", {"name": "split", "document": {"targeting": [{"serve": "on"}]}}))
    dashboard.login()
    dashboard.open("/flags/split")
    rule = _rules(dashboard)[0]
    Select(rule.find_element(By.CSS_SELECTOR, "select.serve-kind")).select_by_value("split")
    _type(rule.find_element(By.CSS_SELECTOR, "input.split"), "a=60, b=50")
    dashboard.css("#rules-editor button[type=submit]").click()
    text = _message(dashboard, "rules-msg", "error")
    assert text.startswith("Not saved: the flag would be invalid.")
    assert "targeting[0].serve.variants: the weights add up to 110%" in text
    assert rule.get_attribute("aria-invalid") == "true"
    assert dashboard.record("split") == (1, {"targeting": [{"serve": "on"}]})

    _type(rule.find_element(By.CSS_SELECTOR, "input.split"), "a=60 b")  # not even pairs
    dashboard.css("#rules-editor button[type=submit]").click()
    dashboard.wait(lambda d: "a split is variant=percent pairs" in d.find_element(By.ID, "rules-msg").text)
    assert dashboard.record("split")[0] == 1


def test_rule_builder_keeps_a_change_made_meanwhile_to_other_keys(dashboard: Dashboard) -> None:
    _ok(dashboard.api("POST", "/flags", {"name": "meanwhile", "document": {"percentage": 10}}))
    dashboard.login()
    dashboard.open("/flags/meanwhile")
    dashboard.css("[data-editor-action=add-rule]").click()
    _active(dashboard).send_keys("everyone on")
    # Someone else sets the percentage: not a key the builder edits, so it is kept.
    _ok(dashboard.api("PATCH", "/flags/meanwhile", {"op": "set_percentage", "percentage": 30}))
    dashboard.css("#rules-editor button[type=submit]").click()
    _says(dashboard, "rules-msg", "Saved as version 3.")
    assert dashboard.record("meanwhile")[1] == {
        "percentage": 30,
        "targeting": [{"name": "everyone on", "serve": "on"}],
    }
    # Someone else changes the rules: the builder refuses to overwrite them.
    theirs = {"percentage": 30, "targeting": [{"serve": "off"}]}
    _ok(dashboard.api("PUT", "/flags/meanwhile", {"document": theirs}))
    dashboard.css("#rules-editor button[type=submit]").click()
    assert "someone else changed the rules" in _message(dashboard, "rules-msg", "error")
    assert dashboard.record("meanwhile") == (4, theirs)


# --------------------------------------------------------------------------- playground


def test_playground_shows_every_flags_decision_and_reason(dashboard: Dashboard) -> None:
    _ok(dashboard.api("PATCH", "/flags/old_onboarding", {"op": "archive"}))
    dashboard.login()
    dashboard.css("nav a[href$='/playground']").click()
    dashboard.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "What does this user get?")
    _type(dashboard.css("#pg-user"), "alice")
    _type(dashboard.css("#pg-groups"), "beta")
    _type(dashboard.css("#pg-attrs"), "plan=pro\napp_version=2.4.0")
    dashboard.css("#playground-form button[type=submit]").click()
    dashboard.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-decision]"))
    rows = {
        r.get_attribute("data-decision"): (r.get_attribute("data-enabled"), r.get_attribute("data-reason"))
        for r in dashboard.driver.find_elements(By.CSS_SELECTOR, "tr[data-decision]")
    }
    expected = _ok(
        dashboard.api(
            "POST",
            "/evaluate",
            {"context": {"user_id": "alice", "groups": ["beta"], "plan": "pro", "app_version": "2.4.0"}},
        )
    )["decisions"]
    assert rows == {n: ("yes" if d["enabled"] else "no", d["reason"]) for n, d in expected.items()}
    assert rows["old_onboarding"] == ("no", "archived")
    assert rows["dark_mode"] == ("yes", "on")
    assert "user=alice" in dashboard.driver.current_url  # a result is a link to share

    _type(dashboard.css("#pg-attrs"), "plan")
    dashboard.css("#playground-form button[type=submit]").click()
    text = dashboard.wait(lambda d: d.find_element(By.ID, "playground-msg").text)
    assert "attributes line 1: write key=value, not 'plan'" in text


def test_playground_offers_recently_exposed_keys(dashboard: Dashboard) -> None:
    now = time.time()
    events = [
        {
            "kind": "exposure",
            "time": now - 10,
            "key": "older-user",
            "flag": "checkout_button",
            "variant": "green",
        },
        {
            "kind": "exposure",
            "time": now,
            "key": "newest-user",
            "flag": "checkout_button",
            "variant": "orange",
        },
    ]
    _ok(dashboard.api("POST", "/ingest", {"events": events}))
    dashboard.login()
    dashboard.open("/playground")
    links = dashboard.driver.find_elements(By.CSS_SELECTOR, "#recent-keys a")
    assert [a.text for a in links] == ["newest-user", "older-user"]
    links[0].click()
    dashboard.wait(lambda d: d.find_element(By.ID, "pg-user").get_attribute("value") == "newest-user")
    assert dashboard.driver.find_elements(By.CSS_SELECTOR, "tr[data-decision]")


# --------------------------------------------------------------------------- compare


def test_compare_two_versions_side_by_side_and_unified(dashboard: Dashboard) -> None:
    _ok(dashboard.api("PUT", "/flags/new_checkout", {"document": {"percentage": 40}, "comment": "wider"}))
    _ok(dashboard.api("PUT", "/flags/new_checkout", {"document": {"percentage": 40, "owner": "team-pay"}}))
    dashboard.login()
    dashboard.open("/flags/new_checkout")
    dashboard.css("#compare-link").click()
    dashboard.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Compare versions of new_checkout")
    # By default: the version before the current one, and the current one.
    assert Select(dashboard.css("#cmp-a")).first_selected_option.get_attribute("value") == "2"
    assert Select(dashboard.css("#cmp-b")).first_selected_option.get_attribute("value") == "3"
    Select(dashboard.css("#cmp-a")).select_by_value("1")
    dashboard.css("#compare-form button[type=submit]").click()
    dashboard.wait(lambda d: "a=1" in d.current_url)
    table = dashboard.css("#compare-split")
    changed = [
        r.text for r in table.find_elements(By.CSS_SELECTOR, "tbody tr.chg, tbody tr.add, tbody tr.del")
    ]
    assert any('"owner": "team-pay"' in t for t in changed)
    assert any("25" in t for t in changed)
    assert "wider" not in dashboard.css("#compare-result").text  # v2's comment: not compared here

    Select(dashboard.css("#cmp-view")).select_by_value("unified")
    Select(dashboard.css("#cmp-a")).select_by_value("2")
    dashboard.css("#compare-form button[type=submit]").click()
    unified = dashboard.wait(lambda d: d.find_element(By.ID, "compare-unified"))
    added = [s.text for s in unified.find_elements(By.CSS_SELECTOR, "span.add")]
    assert added == ['+  "owner": "team-pay",']
    assert "wider" in dashboard.css("#compare-result").text

    dashboard.open("/flags/new_checkout/compare?a=1&b=99")
    assert "new_checkout has no version '99' in its history" in dashboard.css("#compare-msg").text


# --------------------------------------------------------------------------- the list at scale


def test_a_long_list_is_paged_and_searched_by_the_server(dashboard: Dashboard) -> None:
    store = open_store(dashboard.store_url)
    try:
        docs = {f"bulk_{i:03d}": {"percentage": i % 100, "owner": f"team-{i % 3}"} for i in range(250)}
        Admin(store, author="seed").import_documents(docs)
    finally:
        store.close()
    dashboard.login()
    assert "260 flags match" in dashboard.css("#flag-count").text
    assert len(dashboard.visible_rows()) == 100
    dashboard.css("nav.pager a[rel=next]").click()
    dashboard.wait(lambda d: "page=2" in d.current_url)
    names = sorted([*docs, *json.loads(EXAMPLES.read_text())])
    assert dashboard.visible_rows() == names[100:200]
    search = dashboard.css("#f-q")
    _type(search, "bulk_24")
    search.send_keys(Keys.ENTER)
    dashboard.wait(lambda d: "q=bulk_24" in d.current_url)
    assert dashboard.visible_rows() == [f"bulk_{i}" for i in range(240, 250)]
    assert "page=" not in dashboard.driver.current_url
    Select(dashboard.css("#f-owner")).select_by_value("team-1")  # a select reloads past one page
    dashboard.wait(lambda d: "owner=team-1" in d.current_url)
    assert dashboard.visible_rows() == ["bulk_241", "bulk_244", "bulk_247"]


# --------------------------------------------------------------------------- a phone


@pytest.fixture(name="phone")
def phone_fixture(dashboard: Dashboard) -> Iterator[Dashboard]:
    size = dashboard.driver.get_window_size()
    dashboard.driver.set_window_size(375, 812)
    try:
        yield dashboard
    finally:
        dashboard.driver.set_window_size(size["width"], size["height"])


@pytest.mark.parametrize(
    "path",
    [
        "/?archived=all",
        "/flags/pro_reports",
        "/playground?user=alice&attrs=plan%3Dpro",
        "/flags/new_checkout/compare?a=1&b=2",
        "/flags/new_checkout/compare?a=1&b=2&view=unified",
    ],
)
def test_editor_pages_fit_375_px_and_every_control_has_a_label(phone: Dashboard, path: str) -> None:
    _ok(phone.api("PUT", "/flags/new_checkout", {"document": {"percentage": 40, "description": "x" * 300}}))
    _ok(phone.api("PUT", "/flags/pro_reports", {"document": _pro_rules()}))
    phone.login()
    phone.open(path)
    if path == "/?archived=all":
        phone.css("#create-panel summary").click()
    inner = phone.driver.execute_script("return window.innerWidth")
    assert inner <= 400
    width = phone.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= inner, f"{path} is {width}px wide in a {inner}px window"
    unlabelled = phone.driver.execute_script(
        """
        return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
          .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
          .map(el => el.outerHTML);
        """
    )
    assert unlabelled == []


def _pro_rules() -> dict[str, Any]:
    return {
        "targeting": [
            {
                "name": "pro on new apps",
                "groups": ["beta"],
                "when": [
                    {"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]},
                    {"attribute": "app_version", "op": "semver_gte", "value": "2.3.0", "negate": True},
                ],
                "serve": {"variants": {"a": 50, "b": 50}},
            }
        ],
        "default": {"percentage": 10},
        "values": {"a": "blue", "b": {"color": "green"}, "off": False},
    }


# --------------------------------------------------------------------------- segment editor


def test_segment_editor_writes_members_and_rules(dashboard: Dashboard) -> None:
    document = {"description": "Internal staff", "groups": ["employee"], "salt": "staff-1"}
    _ok(dashboard.api("PUT", "/segments/staff", {"document": document}))
    dashboard.login()
    dashboard.open("/segments/staff")
    assert dashboard.css("#seg-groups").get_attribute("value") == "employee"
    _type(dashboard.css("#seg-users"), "alice, bob")
    _type(dashboard.css("#seg-percentage"), "5")
    dashboard.css("[data-editor-action=add-segment-rule]").click()
    rule = dashboard.css("#seg-rules li[data-condition]")
    assert _active(dashboard) == rule.find_element(By.CSS_SELECTOR, "input.attr")
    _active(dashboard).send_keys("email")
    Select(rule.find_element(By.CSS_SELECTOR, "select.op")).select_by_value("ends_with")
    _type(rule.find_element(By.CSS_SELECTOR, "input.val"), "@example.com")
    dashboard.css("#segment-editor button[type=submit]").click()
    _says(dashboard, "segment-editor-msg", "Saved as version 2.")
    assert _ok(dashboard.api("GET", "/segments/staff"))["document"] == {
        "description": "Internal staff",
        "users": ["alice", "bob"],
        "groups": ["employee"],
        "percentage": 5,
        "salt": "staff-1",  # a key the editor does not show is kept
        "rules": [{"attribute": "email", "op": "ends_with", "value": "@example.com"}],
    }

    Select(rule.find_element(By.CSS_SELECTOR, "select.op")).select_by_value("regex")
    _type(rule.find_element(By.CSS_SELECTOR, "input.val"), "(unclosed")
    dashboard.css("[data-editor-action=check-segment]").click()
    text = _message(dashboard, "segment-editor-msg", "error")
    assert text.startswith("the segment would be invalid.")
    assert "rules[0]" in text
    assert _ok(dashboard.api("GET", "/segments/staff"))["version"] == 2


def test_archive_and_the_playground_with_the_keyboard_alone(dashboard: Dashboard) -> None:
    dashboard.login()
    dashboard.open("/flags/new_checkout")
    dashboard.wait_live()
    comment = dashboard.css("#lifecycle-comment")
    comment.send_keys("replaced by checkout_v2")
    comment.send_keys(Keys.TAB)
    assert _active(dashboard).get_attribute("data-editor-action") == "archive"
    _active(dashboard).send_keys(Keys.ENTER)
    dashboard.wait(lambda d: d.execute_script("return document.getElementById('confirm').open"))
    assert _active(dashboard).get_attribute("id") == "confirm-cancel"  # the safe choice first
    _active(dashboard).send_keys(Keys.TAB)
    _active(dashboard).send_keys(Keys.ENTER)
    dashboard.wait(lambda d: d.find_elements(By.ID, "archived-note"))
    assert dashboard.record("new_checkout")[1] == {"percentage": 25, "archived": True}
    assert _history_comments(dashboard, "new_checkout")[0] == "replaced by checkout_v2"

    dashboard.open("/playground")
    user = dashboard.css("#pg-user")
    user.send_keys("alice")
    user.send_keys(Keys.ENTER)  # Enter in a box submits the form
    dashboard.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-decision]"))
    row = dashboard.css("tr[data-decision=new_checkout]")
    assert row.get_attribute("data-reason") == "archived"
