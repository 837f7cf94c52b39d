"""The OpenFeature provider, exercised through the real openfeature-sdk client."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason as OFReason
from openfeature.provider import ProviderStatus

import flagstaff
from flagstaff import Client, Options, State
from flagstaff.admin import Admin
from flagstaff.integrations.openfeature import FlagstaffProvider, to_context
from flagstaff.overrides import install
from flagstaff.stores import open_store
from flagstaff.testing import wait_until
from tests._support.client import eventually

FLAGS: dict[str, Any] = {
    "checkout": "on",
    "killed": {"enabled": False, "everyone": True},
    "beta": {"groups": ["beta"], "users": ["carol"]},
    "ramp": 50,
    "color": {"enabled": "on", "variants": ["red", "green"]},
    "limit": {"enabled": "on", "variants": ["10"]},
    "ratio": {"enabled": "on", "variants": ["0.25"]},
    "beta_color": {"groups": ["beta"], "variants": ["blue"]},
    "exp": {"experiment": {"experiment_id": 42, "loggedin": True, "variants": {"a": 25, "b": 25}}},
    "pro": {"rules": [{"all": [{"attribute": "plan", "op": "in", "value": ["pro"]}]}]},
    "later": {"everyone": True, "schedule": {"start": "2999-01-01T00:00:00Z"}},
}

_domains = itertools.count()


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    yield
    api.clear_providers()  # shuts every provider down; each test registers its own


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'flags.db'}"
    store = open_store(url)
    try:
        admin = Admin(store, author="test")
        for name, doc in FLAGS.items():
            admin.set(name, doc)
    finally:
        store.close()
    return url


@pytest.fixture
def provider(sqlite_url: str) -> Iterator[FlagstaffProvider]:
    p = FlagstaffProvider(sqlite_url, poll_interval=0.05)
    yield p
    p.shutdown()


def bind(provider: FlagstaffProvider) -> OpenFeatureClient:
    """Register ``provider`` under a fresh domain and return an OpenFeature client for it."""
    domain = f"flagstaff-test-{next(_domains)}"
    api.set_provider_and_wait(provider, domain)
    return api.get_client(domain)


def ctx(key: str | None = None, **attributes: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key=key, attributes=attributes)


def test_boolean(provider: FlagstaffProvider) -> None:
    of = bind(provider)
    assert of.get_provider_status() is ProviderStatus.READY
    d = of.get_boolean_details("checkout", False)
    assert (d.value, d.reason, d.error_code, d.flag_metadata["flagstaff_reason"]) == (
        True,
        OFReason.STATIC,
        None,
        "on",
    )
    d = of.get_boolean_details("killed", True)
    assert (d.value, d.reason) == (False, OFReason.DISABLED)
    d = of.get_boolean_details("beta", False, ctx("u1", groups=["beta"]))
    assert (d.value, d.reason, d.flag_metadata["rule"]) == (True, OFReason.TARGETING_MATCH, "groups")
    d = of.get_boolean_details("beta", False, ctx("carol"))  # targeting_key is the user id
    assert (d.value, d.reason, d.flag_metadata["rule"]) == (True, OFReason.TARGETING_MATCH, "users")
    d = of.get_boolean_details("beta", True, ctx("u1"))
    assert (d.value, d.reason) == (False, OFReason.DEFAULT)
    d = of.get_boolean_details("later", True, ctx("u1"))
    assert (d.value, d.reason, d.flag_metadata["flagstaff_reason"]) == (False, OFReason.DISABLED, "schedule")
    assert of.get_boolean_value("pro", False, ctx("u1", plan="pro")) is True
    assert of.get_boolean_value("pro", True, ctx("u1", plan="free")) is False


def test_percentage_is_a_split_matching_the_client(provider: FlagstaffProvider) -> None:
    of = bind(provider)
    client = provider.client
    on = 0
    for i in range(300):
        d = of.get_boolean_details("ramp", False, ctx(f"user{i}"))
        assert d.value is client.is_enabled("ramp", f"user{i}")
        assert d.reason == (OFReason.SPLIT if d.value else OFReason.DEFAULT)
        on += d.value
    assert 90 < on < 210


def test_string_integer_float_object(provider: FlagstaffProvider) -> None:
    of = bind(provider)
    d = of.get_string_details("color", "none", ctx("u1"))
    assert d.value in ("red", "green") and d.variant == d.value
    assert d.value == provider.client.variant("color", "u1")
    assert of.get_integer_details("limit", 0, ctx("u1")).value == 10
    f = of.get_float_details("ratio", 1.0, ctx("u1"))
    assert (f.value, f.reason, f.error_code) == (0.25, OFReason.STATIC, None)
    assert isinstance(of.get_float_value("limit", 0.0, ctx("u1")), float)
    o = of.get_object_details("color", {}, ctx("u1"))
    assert o.value == {"enabled": True, "variant": d.value}
    assert of.get_object_value("checkout", {"x": 1}) == {"enabled": True}
    # Off for this user: the caller's default, with the reason.
    s = of.get_string_details("beta_color", "fallback", ctx("u1"))
    assert (s.value, s.reason, s.variant, s.error_code) == ("fallback", OFReason.DEFAULT, None, None)
    assert of.get_string_value("beta_color", "fallback", ctx("u1", groups=["beta"])) == "blue"


def test_experiment_variants_are_splits_with_their_id(provider: FlagstaffProvider) -> None:
    of = bind(provider)
    seen = set()
    for i in range(200):
        d = of.get_string_details("exp", "none", ctx(f"user{i}"))
        if d.value != "none":
            assert d.reason == OFReason.SPLIT and d.flag_metadata["experiment_id"] == 42
            seen.add(d.value)
    assert {"a", "b"} <= seen


@pytest.mark.parametrize(
    ("kind", "flag", "default", "code"),
    [
        ("boolean", "nope", True, ErrorCode.FLAG_NOT_FOUND),
        ("string", "nope", "d", ErrorCode.FLAG_NOT_FOUND),
        ("integer", "nope", 3, ErrorCode.FLAG_NOT_FOUND),
        ("float", "nope", 0.5, ErrorCode.FLAG_NOT_FOUND),
        ("object", "nope", {"d": 1}, ErrorCode.FLAG_NOT_FOUND),
        ("string", "checkout", "d", ErrorCode.TYPE_MISMATCH),  # no variants at all
        ("integer", "color", 3, ErrorCode.TYPE_MISMATCH),  # "red" is not a number
        ("integer", "ratio", 3, ErrorCode.TYPE_MISMATCH),  # "0.25" is not an integer
        ("float", "color", 0.5, ErrorCode.TYPE_MISMATCH),
    ],
)
def test_errors_answer_the_default(
    provider: FlagstaffProvider, kind: str, flag: str, default: Any, code: ErrorCode
) -> None:
    of = bind(provider)
    d = getattr(of, f"get_{kind}_details")(flag, default, ctx("u1"))
    assert (d.value, d.reason, d.error_code) == (default, OFReason.ERROR, code)
    assert d.error_message and flag in d.error_message


def test_invalid_document_is_a_parse_error(sqlite_url: str, provider: FlagstaffProvider) -> None:
    of = bind(provider)
    store = open_store(sqlite_url)
    try:
        store.put("broken", json.dumps({"percentage": 500}))  # bypassing validation, as a hand edit would
    finally:
        store.close()
    assert eventually(lambda: "broken" in provider.client.status().invalid, 10)
    d = of.get_boolean_details("broken", True)
    assert (d.value, d.error_code) == (True, ErrorCode.PARSE_ERROR)
    assert d.error_message and "between 0 and 100" in d.error_message


def test_context_mapping_and_invalid_context(provider: FlagstaffProvider) -> None:
    c = to_context(ctx("alice", groups=["beta"], cookie_id="c1", plan="pro", user_id="ignored"))
    assert c is not None
    assert (c.user_id, c.groups, c.cookie_id, c.attributes["plan"]) == ("alice", {"beta"}, "c1", "pro")
    assert to_context(EvaluationContext()) is None
    of = bind(provider)
    d = of.get_boolean_details("checkout", False, ctx("u1", time="yesterday"))
    assert (d.value, d.error_code) == (False, ErrorCode.INVALID_CONTEXT)


def test_empty_context_uses_the_current_scope(provider: FlagstaffProvider) -> None:
    of = bind(provider)
    assert of.get_boolean_value("beta", False) is False
    with provider.client.scope({"user_id": "u1", "groups": ["beta"]}):
        assert of.get_boolean_value("beta", False) is True


def test_overrides_show_through(provider: FlagstaffProvider) -> None:
    of = bind(provider)
    install(provider.client, ["killed=on", "limit=variant:99"], environ={})
    d = of.get_boolean_details("killed", False)
    assert (d.value, d.reason, d.flag_metadata["rule"]) == (True, "OVERRIDE", "--flag")
    assert of.get_integer_value("limit", 0) == 99


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[ProviderEvent, EventDetails]] = []
        self.cond = threading.Condition()

    def handler(self, event: ProviderEvent) -> Any:
        def record(details: EventDetails) -> None:
            with self.cond:
                self.events.append((event, details))
                self.cond.notify_all()

        return record

    def wait_for(
        self, event: ProviderEvent, timeout: float = 15.0, changed: str | None = None
    ) -> EventDetails:
        """The first ``event`` recorded (naming the flag ``changed`` in ``flags_changed``)."""

        def found() -> EventDetails | None:
            for ev, details in self.events:
                if ev is event and (changed is None or changed in (details.flags_changed or ())):
                    return details
            return None

        with self.cond:
            self.cond.wait_for(lambda: found() is not None, timeout)
            got = found()
        assert got is not None, f"no {event} ({changed}) in {self.events}"
        return got


def test_configuration_changed_on_a_store_change(sqlite_url: str, provider: FlagstaffProvider) -> None:
    of = bind(provider)
    rec = Recorder()
    of.add_handler(ProviderEvent.PROVIDER_READY, rec.handler(ProviderEvent.PROVIDER_READY))
    of.add_handler(
        ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
        rec.handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED),
    )
    rec.wait_for(ProviderEvent.PROVIDER_READY)  # run at once for a ready provider
    store = open_store(sqlite_url)  # another connection: a real change from outside the process's client
    try:
        Admin(store, author="ops").disable("checkout")
        details = rec.wait_for(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changed="checkout")
        assert (details.provider_name, details.flags_changed) == ("flagstaff", ["checkout"])
        assert of.get_boolean_details("checkout", True).reason == OFReason.DISABLED
        Admin(store, author="ops").set("beta", {"groups": ["beta"]})
        Admin(store, author="ops").delete("ratio")
        rec.wait_for(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changed="ratio")
    finally:
        store.close()
    assert of.get_float_details("ratio", 1.0).error_code is ErrorCode.FLAG_NOT_FOUND


def test_stale_then_ready_when_the_store_comes_back(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    url = f"file://{path}"
    seed = open_store(url)
    Admin(seed).set("f", "on")
    seed.close()
    with flagstaff.connect(url, timeout=5) as client:
        provider = FlagstaffProvider(client, poll_interval=0.05)
        of = bind(provider)
        rec = Recorder()
        for event in (ProviderEvent.PROVIDER_STALE, ProviderEvent.PROVIDER_READY):
            of.add_handler(event, rec.handler(event))
        for leftover in tmp_path.glob("*flags.json*"):
            leftover.unlink()  # the store is wiped: the client keeps its flags but goes stale
        stale = rec.wait_for(ProviderEvent.PROVIDER_STALE)
        assert stale.message and "stale" in stale.message
        assert of.get_provider_status() is ProviderStatus.STALE
        assert of.get_boolean_value("f", False) is True  # still served
        rec.events.clear()
        back = open_store(url)
        Admin(back).set("f", "off")
        back.close()
        rec.wait_for(ProviderEvent.PROVIDER_READY)
        assert of.get_provider_status() is ProviderStatus.READY
        assert eventually(lambda: of.get_boolean_value("f", True) is False)
        api.clear_providers()  # shuts the provider down; the client is ours and stays open
        assert client.status().state is State.LIVE


def test_error_until_the_store_can_be_loaded(tmp_path: Path) -> None:
    db = tmp_path / "flags.db"
    db.mkdir()  # the database path is unusable: nothing can be loaded
    url = f"sqlite:///{db}"
    with Client(url, Options(timeout=0.3)) as client:
        assert client.status().state is State.DEFAULTS
        provider = FlagstaffProvider(client, poll_interval=0.05)
        domain = f"flagstaff-test-{next(_domains)}"
        rec = Recorder()
        api.set_provider(provider, domain)
        of = api.get_client(domain)
        of.add_handler(ProviderEvent.PROVIDER_READY, rec.handler(ProviderEvent.PROVIDER_READY))
        assert eventually(lambda: of.get_provider_status() is ProviderStatus.ERROR, 10)
        assert of.get_boolean_details("f", True).error_code is ErrorCode.FLAG_NOT_FOUND
        db.rmdir()
        fixed = open_store(url)
        Admin(fixed).set("f", "on")
        fixed.close()
        rec.wait_for(ProviderEvent.PROVIDER_READY, timeout=20)
        assert of.get_boolean_value("f", False) is True
        provider.shutdown()


def test_shutdown_closes_only_what_it_opened(sqlite_url: str) -> None:
    owned = FlagstaffProvider(sqlite_url)
    of = bind(owned)
    client = owned.client
    assert of.get_boolean_value("checkout", False) is True
    owned.shutdown()
    with pytest.raises(flagstaff.ClientError):
        client.wait_for_change("checkout", 0.01)  # closed
    d = of.get_boolean_details("checkout", False)
    assert d.error_code is not None  # after shutdown: the default, with an error


def test_old_import_path_still_works() -> None:
    # The provider moved to flagstaff.integrations.openfeature; `flagstaff.openfeature` re-exports it.
    from flagstaff import openfeature as old

    assert (old.FlagstaffProvider, old.to_context) == (FlagstaffProvider, to_context)


# ------------------------------------------------------------ issue 14: values, reasons, attributes


def test_every_flagstaff_reason_has_an_openfeature_reason() -> None:
    from flagstaff.decision import Reason
    from flagstaff.integrations.openfeature import REASONS

    assert set(REASONS) == set(Reason)
    assert REASONS[Reason.RULE] == OFReason.TARGETING_MATCH
    assert REASONS[Reason.DENIED] == REASONS[Reason.PREREQUISITE] == OFReason.TARGETING_MATCH
    assert REASONS[Reason.HOLDOUT] == OFReason.SPLIT


def test_every_other_attribute_is_a_context_attribute() -> None:
    c = to_context(ctx("u1", account="acme", seats=12, tags=["a"], location="checkout"))
    assert c is not None
    assert (c.user_id, c.location) == ("u1", "checkout")  # known fields stay fields
    assert dict(c.attributes) == {"account": "acme", "seats": 12, "tags": ["a"]}
    assert c.attribute("account") == "acme"  # what rules and bucket_by read


VALUE_FLAGS: dict[str, Any] = {
    "limits": {"enabled": "on", "values": {"on": {"max_items": 20}, "off": {"max_items": 10}}},
    "tiers": {"groups": ["beta"], "values": {"on": 50, "off": 10}},
    "share": {"enabled": "on", "values": {"on": 0.5}},
    "copy": {"enabled": "on", "variants": ["short", "long"], "values": {"short": "Buy", "long": "Buy now"}},
    "flagged": {"enabled": "on", "values": {"on": True}},
    "half_of_only_a": {"enabled": "on", "variants": ["a", "b"], "values": {"a": "value of a"}},
    "plans": {
        "targeting": [{"when": [{"attribute": "plan", "op": "in", "value": ["pro"]}], "serve": "on"}],
        "default": "off",
        "values": {"on": {"max_items": 50}, "off": {"max_items": 10}},
    },
    "by_account": {"bucket_by": "account", "percentage": 50},
    "denied": {"everyone": True, "deny": {"users": ["mallory"]}},
    "base": "off",
    "needs_base": {"everyone": True, "prerequisites": ["base"]},
}


@pytest.fixture
def value_provider(tmp_path: Path) -> Iterator[FlagstaffProvider]:
    url = f"sqlite:///{tmp_path / 'values.db'}"
    store = open_store(url)
    try:
        admin = Admin(store, author="test")
        for name, doc in VALUE_FLAGS.items():
            admin.set(name, doc)
    finally:
        store.close()
    p = FlagstaffProvider(url, poll_interval=0.05)
    yield p
    p.shutdown()


def test_typed_values_of_each_kind(value_provider: FlagstaffProvider) -> None:
    of = bind(value_provider)
    o = of.get_object_details("limits", {}, ctx("u1"))
    assert (o.value, o.variant, o.reason, o.error_code) == ({"max_items": 20}, "on", OFReason.STATIC, None)
    i = of.get_integer_details("tiers", 0, ctx("u1", groups=["beta"]))
    assert (i.value, i.variant, i.reason) == (50, "on", OFReason.TARGETING_MATCH)
    i = of.get_integer_details("tiers", 0, ctx("u2"))  # off for this user: the "off" value, not the default
    assert (i.value, i.variant, i.reason, i.error_code) == (10, "off", OFReason.DEFAULT, None)
    f = of.get_float_details("share", 1.0, ctx("u1"))
    assert (f.value, f.error_code) == (0.5, None)
    assert of.get_float_value("tiers", 0.0, ctx("u2")) == 10.0  # a JSON integer is a number too
    assert isinstance(of.get_float_value("tiers", 0.0, ctx("u2")), float)
    s = of.get_string_details("copy", "", ctx("u1"))
    assert s.value == {"short": "Buy", "long": "Buy now"}[s.variant]
    assert s.variant == value_provider.client.variant("copy", "u1")
    # Variant "b" has no value: its name, as before values existed.
    names = {of.get_string_value("half_of_only_a", "", ctx(f"user{i}")) for i in range(60)}
    assert names == {"value of a", "b"}


@pytest.mark.parametrize(
    ("kind", "flag", "default", "found"),
    [
        ("string", "limits", "d", "an object ({\"max_items\": 20}) for 'on'"),
        ("integer", "share", 3, "a number (0.5) for 'on'"),
        ("integer", "flagged", 3, "a boolean (true) for 'on'"),  # a boolean is no integer
        ("float", "copy", 0.5, "a string"),
        ("object", "tiers", {"d": 1}, "an integer (10) for 'off'"),
        ("string", "flagged", "d", "a boolean (true)"),
    ],
)
def test_a_type_mismatch_answers_the_default_and_says_what_was_found(
    value_provider: FlagstaffProvider, kind: str, flag: str, default: Any, found: str
) -> None:
    of = bind(value_provider)
    d = getattr(of, f"get_{kind}_details")(flag, default, ctx("u2"))
    assert (d.value, d.reason, d.error_code) == (default, OFReason.ERROR, ErrorCode.TYPE_MISMATCH)
    assert d.error_message and f"flag {flag!r} serves {found}" in d.error_message


def test_new_reasons_through_the_sdk(value_provider: FlagstaffProvider) -> None:
    of = bind(value_provider)
    d = of.get_object_details("plans", {}, ctx("u1", plan="pro"))
    assert (d.value, d.reason, d.flag_metadata["flagstaff_reason"]) == (
        {"max_items": 50},
        OFReason.TARGETING_MATCH,
        "rule",
    )
    assert d.flag_metadata["rule"] == "targeting[0]"
    d = of.get_object_details("plans", {}, ctx("u1", plan="free"))
    assert (d.value, d.reason, d.flag_metadata["rule"]) == ({"max_items": 10}, OFReason.DEFAULT, "default")
    d = of.get_boolean_details("denied", True, ctx("mallory"))
    assert (d.value, d.reason, d.flag_metadata["flagstaff_reason"]) == (
        False,
        OFReason.TARGETING_MATCH,
        "denied",
    )
    assert of.get_boolean_value("denied", False, ctx("alice")) is True
    d = of.get_boolean_details("needs_base", True, ctx("u1"))
    assert (d.value, d.reason, d.flag_metadata["flagstaff_reason"]) == (
        False,
        OFReason.TARGETING_MATCH,
        "prerequisite",
    )
    assert d.flag_metadata["rule"] == "base"


def test_bucket_by_reads_an_openfeature_attribute(value_provider: FlagstaffProvider) -> None:
    of = bind(value_provider)
    client = value_provider.client
    seen = []
    for i in range(40):
        account = f"acct{i}"
        # Every user of one account gets the account's answer.
        answers = {of.get_boolean_value("by_account", False, ctx(f"u{j}", account=account)) for j in range(5)}
        assert len(answers) == 1
        (answer,) = answers
        assert answer is client.is_enabled("by_account", {"user_id": "x", "account": account})
        seen.append(answer)
    assert 5 < sum(seen) < 35
    # Without the attribute: not bucketed, so not enabled (never an error).
    d = of.get_boolean_details("by_account", True, ctx("u1"))
    assert (d.value, d.error_code) == (False, None)


def test_an_object_value_is_a_copy(value_provider: FlagstaffProvider) -> None:
    of = bind(value_provider)
    first = of.get_object_value("limits", {}, ctx("u1"))
    assert isinstance(first, dict)
    first["max_items"] = 0  # the caller edits its copy...
    assert of.get_object_value("limits", {}, ctx("u1")) == {"max_items": 20}  # ...not the flag


def test_a_segment_change_names_the_flags_it_reaches_not_the_segment(
    sqlite_url: str, provider: FlagstaffProvider
) -> None:
    of = bind(provider)
    rec = Recorder()
    of.add_handler(
        ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
        rec.handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED),
    )
    store = open_store(sqlite_url)
    try:
        admin = Admin(store, author="ops")
        admin.set("segment:staff", {"users": ["alice"]})
        admin.set("staff_tools", {"targeting": [{"segments": ["staff"], "serve": "on"}]})
        rec.wait_for(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changed="staff_tools")
        before = len(rec.events)
        admin.set("segment:staff", {"users": ["alice", "bob"]})
        # The segment's change reaches the flag: an event naming it, after the ones above.
        wait_until(
            lambda: any("staff_tools" in (details.flags_changed or ()) for _, details in rec.events[before:]),
            10.0,
            message=lambda: f"no event naming staff_tools after the segment change: {rec.events}",
        )
    finally:
        store.close()
    assert of.get_boolean_value("staff_tools", False, EvaluationContext("bob")) is True
    named = [name for _, details in rec.events for name in details.flags_changed or ()]
    assert "staff_tools" in named
    assert not [name for name in named if name.startswith("segment:")]
