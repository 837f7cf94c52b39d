"""Reading a request (flagstaff.integrations.request) and ``flags``, the current-request proxy."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from flagstaff import Context, Reason
from flagstaff.forcing import ForceKeyError, sign
from flagstaff.integrations import CurrentFlags, RequestOptions, flags
from flagstaff.integrations.request import (
    MAX_FEATURE_LENGTH,
    MAX_FEATURES,
    context_from,
    cookie_header,
    forced_features,
    parse_cookie_header,
    read_facts,
    subdomain_of,
)
from tests._support.web import FlagWorld, flag_world

pytestmark = pytest.mark.timeout(60)

KEY = b"request-test-forcing-key-0123456"  # a test-only key
SIGNED = RequestOptions(force_key=KEY)
UNSIGNED = RequestOptions(force_key=None, unsigned_forcing=True)


@pytest.fixture
def world() -> Iterator[FlagWorld]:
    with flag_world() as w:
        yield w


def test_a_valid_cookie_is_kept_and_a_missing_one_is_minted() -> None:
    options = RequestOptions()
    kept = read_facts(options, "visitor-1", [], None)
    assert (kept.cookie_id, kept.new_cookie) == ("visitor-1", False)
    minted = read_facts(options, None, [], None)
    assert minted.new_cookie and minted.cookie_id is not None and len(minted.cookie_id) >= 16
    again = read_facts(options, None, [], None)
    assert again.cookie_id != minted.cookie_id  # random, not a constant bucket for everyone
    # What we mint is accepted back unchanged.
    assert read_facts(options, minted.cookie_id, [], None).cookie_id == minted.cookie_id


@pytest.mark.parametrize("bad", ["", "has space", "x" * 65, "semi;colon", "ünïcode"])
def test_a_malformed_cookie_is_replaced(bad: str) -> None:
    facts = read_facts(RequestOptions(), bad, [], None)
    assert facts.new_cookie and facts.cookie_id != bad


def test_no_cookie_option_reads_and_sets_nothing() -> None:
    facts = read_facts(RequestOptions(cookie=None), "visitor-1", [], None)
    assert (facts.cookie_id, facts.new_cookie) == (None, False)


def test_features_keep_order_and_are_bounded() -> None:
    tokens = [sign("b", KEY, 60), "", sign("a", KEY, 60), "unsigned"]
    assert read_facts(SIGNED, "v", tokens, None).features == ("b", "a")
    many = read_facts(SIGNED, "v", [sign(f"f{i}", KEY, 60) for i in range(MAX_FEATURES + 5)], None)
    assert many.features == tuple(f"f{i}" for i in range(MAX_FEATURES))
    assert read_facts(RequestOptions(feature_param=None, force_key=KEY), "v", tokens, None).features == ()


def test_unsigned_forcing_keeps_plain_values_bounded() -> None:
    facts = read_facts(UNSIGNED, "v", ["b", "", "a", "x" * (MAX_FEATURE_LENGTH + 1)], None)
    assert facts.features == ("b", "a")
    many = read_facts(UNSIGNED, "v", [f"f{i}" for i in range(MAX_FEATURES + 5)], None)
    assert many.features == tuple(f"f{i}" for i in range(MAX_FEATURES))
    # With a key as well, a token that verifies gives its value; anything else is taken as is.
    both = RequestOptions(force_key=KEY, unsigned_forcing=True)
    assert forced_features(both, [sign("x", KEY, 60), "plain"]) == ("x", "plain")


def test_forcing_checks_expiry_at_the_given_time() -> None:
    token = sign("f", KEY, 60, now=1000)
    assert forced_features(SIGNED, [token], now=1059) == ("f",)
    assert forced_features(SIGNED, [token], now=1060) == ()
    assert forced_features(RequestOptions(force_key=None), [token], now=1000) == ()  # no key: nothing


def test_the_forcing_key_option(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RequestOptions(force_key="s" * 16).force_key == b"s" * 16  # kept as bytes
    assert KEY not in repr(SIGNED).encode()  # never printed
    with pytest.raises(ForceKeyError, match="force_key is 5 bytes"):
        RequestOptions(force_key="short")
    monkeypatch.setenv("FLAGSTAFF_FORCE_KEY", KEY.decode())
    assert RequestOptions().force_key == KEY
    monkeypatch.setenv("FLAGSTAFF_FORCE_KEY", "short")
    with pytest.raises(ForceKeyError, match=r"\$FLAGSTAFF_FORCE_KEY is 5 bytes"):
        RequestOptions()
    monkeypatch.delenv("FLAGSTAFF_FORCE_KEY")
    assert RequestOptions().force_key is None


@pytest.mark.parametrize(
    ("host", "domain", "want"),
    [
        ("beta.example.com", "example.com", "beta"),
        ("Beta.Example.com:8080", "example.com", "beta"),
        ("a.b.example.com", ".example.com.", "a.b"),
        ("example.com", "example.com", None),
        ("badexample.com", "example.com", None),
        ("beta.example.com", None, None),
        ("[::1]:8000", "example.com", None),
        (None, "example.com", None),
    ],
)
def test_subdomain(host: str | None, domain: str | None, want: str | None) -> None:
    if domain is not None:
        domain = RequestOptions(domain=domain).domain
    assert subdomain_of(host, domain) == want


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="cookie name"):
        RequestOptions(cookie="bad name;")
    with pytest.raises(ValueError, match="cookie_max_age"):
        RequestOptions(cookie_max_age=0)


def test_cookie_header_parsing_is_lenient() -> None:
    header = 'a=1; flagstaff_id="abc"; junk; b=2'
    assert parse_cookie_header(header, "flagstaff_id") == "abc"
    assert parse_cookie_header(header, "b") == "2"
    assert parse_cookie_header(header, "missing") is None
    assert parse_cookie_header(None, "a") is None


def test_set_cookie_value() -> None:
    value = cookie_header(RequestOptions(cookie="loid", cookie_max_age=60), "v1", secure=True)
    assert value == "loid=v1; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
    assert "Secure" not in cookie_header(RequestOptions(), "v1", secure=False)


def test_the_hook_wins_over_request_facts() -> None:
    facts = read_facts(
        RequestOptions(domain="example.com", force_key=KEY), "v1", [sign("f", KEY, 60)], "beta.example.com"
    )

    def hook(request: Any) -> dict[str, Any]:
        assert request == "the request"
        return {"user_id": "alice", "cookie_id": "from-app", "groups": ["beta"]}

    data = context_from(facts, hook, "the request")
    ctx = Context.from_dict(data)
    assert (ctx.user_id, ctx.cookie_id, ctx.features, ctx.subdomain) == ("alice", "from-app", ("f",), "beta")
    assert ctx.groups == {"beta"}


def test_a_failing_hook_is_logged_and_the_request_facts_remain(caplog: pytest.LogCaptureFixture) -> None:
    facts = read_facts(RequestOptions(), "v1", [], None)

    def hook(request: Any) -> dict[str, Any]:
        raise KeyError("session")

    with caplog.at_level(logging.ERROR, logger="flagstaff.integrations"):
        data = context_from(facts, hook, None)
    assert data == {"cookie_id": "v1"}
    assert "context hook failed" in caplog.text


# ------------------------------------------------------------------ flags, the proxy


def test_no_scope_and_no_client_is_off_with_an_error() -> None:
    proxy = CurrentFlags()
    decision = proxy.evaluate("everyone")
    assert decision.enabled is False and decision.reason is Reason.ERROR
    assert "no flagstaff client" in (decision.error or "")
    assert proxy.all() == {}
    assert proxy.variant("theme") is None


def test_outside_a_request_the_client_answers_with_an_empty_context(world: FlagWorld) -> None:
    proxy = CurrentFlags()
    proxy.use(world.client)
    assert proxy.scope is None
    assert proxy.is_enabled("everyone") is True
    assert proxy.is_enabled("alice_only") is False  # nobody is logged in
    assert proxy.is_enabled("alice_only", {"user_id": "alice"}) is True
    assert set(proxy.all()) == set(world.client.snapshot.flags)


def test_inside_a_scope_the_scope_answers(world: FlagWorld) -> None:
    proxy = CurrentFlags()  # no fallback client at all: the scope is enough
    with world.client.scope({"user_id": "alice"}) as scope:
        assert proxy.scope is scope
        assert proxy.is_enabled("alice_only") is True
        assert proxy.variant("theme") == "dark"
        assert proxy.is_enabled("alice_only", "bob") is False  # someone else, same snapshot
        assert proxy.all()["alice_only"].enabled is True
    assert proxy.scope is None
    assert proxy.evaluate("alice_only").reason is Reason.ERROR


def test_the_module_level_flags_is_a_current_flags() -> None:
    assert isinstance(flags, CurrentFlags)
    assert "CurrentFlags" in repr(flags)


def test_the_package_exports_are_sorted_complete_and_framework_free() -> None:
    import subprocess
    import sys
    import types

    import flagstaff.integrations as package

    assert package.__all__ == sorted(package.__all__)
    public = {
        n for n, v in vars(package).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public == set(package.__all__)
    # Importing the package (and the WSGI/ASGI middleware) pulls in no web framework.
    code = (
        "import sys, flagstaff.integrations, flagstaff.integrations.wsgi, flagstaff.integrations.asgi; "
        "print(sorted(m for m in ('flask', 'django', 'jinja2', 'mako', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
