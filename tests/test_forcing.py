"""Signed QA forcing tokens (flagstaff.forcing) and the ``flagstaff force-token`` command."""

from __future__ import annotations

import base64
import io
import json
import re
import time

import pytest

from flagstaff import forcing
from flagstaff.cli import main
from flagstaff.forcing import (
    KEY_ENV,
    MAX_TOKEN_LENGTH,
    MAX_VALUE_LENGTH,
    ForceKeyError,
    ForceToken,
    check_key,
    issue,
    key_from_env,
    parse_ttl,
    sign,
    verify,
)

KEY = b"k" * 32
OTHER = b"o" * 32
NOW = 1_800_000_000.0


def test_a_token_verifies_to_its_value_until_it_expires() -> None:
    token = sign("try_forced", KEY, ttl=60, now=NOW)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[0-9]+\.[A-Za-z0-9_-]{43}", token)  # URL-safe as is
    assert verify(token, KEY, now=NOW) == "try_forced"
    assert verify(token, KEY, now=NOW + 59.9) == "try_forced"
    assert verify(token, KEY, now=NOW + 60) is None  # expired at the expiry second
    assert verify(token, KEY, now=NOW + 86400) is None


def test_values_with_dots_and_any_text_round_trip() -> None:
    for value in ("a.b.c", "ünïcödé ✓", "x" * MAX_VALUE_LENGTH, "with space&amp=1"):
        assert verify(sign(value, KEY, 10, now=NOW), KEY, now=NOW) == value


def test_a_str_key_is_its_utf8_bytes() -> None:
    token = sign("v", "s" * 16, 10, now=NOW)
    assert verify(token, b"s" * 16, now=NOW) == "v"


def test_another_key_does_not_verify() -> None:
    assert verify(sign("v", KEY, 60, now=NOW), OTHER, now=NOW) is None


def test_a_token_cannot_be_replayed_as_another_value() -> None:
    token = sign("harmless", KEY, 60, now=NOW)
    _, expiry, sig = token.split(".")
    forged_value = base64.urlsafe_b64encode(b"admin_panel").rstrip(b"=").decode()
    assert verify(f"{forged_value}.{expiry}.{sig}", KEY, now=NOW) is None


def test_the_expiry_cannot_be_extended() -> None:
    token = sign("v", KEY, 60, now=NOW)
    value, expiry, sig = token.split(".")
    assert verify(f"{value}.{int(expiry) + 3600}.{sig}", KEY, now=NOW + 120) is None


def test_tampered_and_malformed_tokens_are_ignored() -> None:
    token = sign("v", KEY, 60, now=NOW)
    value, expiry, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    bad = [
        f"{value}.{expiry}.{flipped}",
        f"{value}.{expiry}.{sig[:-1]}",
        f"{value}.{expiry}",
        f"{value}.-{expiry}.{sig}",
        f"{value}.{expiry}.{sig}.extra",
        f"{value}+.{expiry}.{sig}",
        f"{value}.{expiry}.{sig.replace('-', '+').replace('_', '/')}" if "-" in sig or "_" in sig else "x",
        "v",
        "",
        "a" * (MAX_TOKEN_LENGTH + 1),
        f"!.{expiry}.{sig}",
        f"{value}.\uff11\uff12.{sig}",  # non-ASCII digits
    ]
    for text in bad:
        assert verify(text, KEY, now=NOW) is None, text
    assert verify(token, KEY, now=NOW) == "v"  # the original still does


def test_a_short_key_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ForceKeyError, match="15 bytes; a forcing key needs at least 16"):
        sign("v", b"x" * 15, 60)
    with pytest.raises(ForceKeyError, match="at least 16"):
        verify("anything", "short")
    with pytest.raises(ValueError):  # a ForceKeyError is a ValueError (configuration code catches those)
        check_key(b"")
    with pytest.raises(ForceKeyError, match="bytes or str"):
        check_key(12345678901234567890)  # type: ignore[arg-type]
    assert check_key("é" * 8) == ("é" * 8).encode()  # 16 bytes of UTF-8: enough


def test_sign_refuses_what_it_cannot_sign() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        sign("", KEY, 60)
    with pytest.raises(ValueError, match="at most"):
        sign("x" * (MAX_VALUE_LENGTH + 1), KEY, 60)
    with pytest.raises(ValueError, match="ttl"):
        sign("v", KEY, 0)


def test_issue_gives_the_token_with_its_value_and_expiry() -> None:
    made = issue("big", KEY, 90, now=NOW)
    assert made == ForceToken(made.token, "big", int(NOW + 90))
    assert verify(made.token, KEY, now=NOW) == "big"
    assert made.to_dict() == {
        "token": made.token,
        "value": "big",
        "expires": "2027-01-15T08:01:30Z",
        "expires_at": 1_800_000_090,
    }


def test_ttl_durations() -> None:
    assert [parse_ttl(t) for t in ("90", "90s", "15m", "1h", "7d", "1.5h", " 2H ")] == [
        90,
        90,
        900,
        3600,
        604800,
        5400,
        7200,
    ]
    for bad in ("0", "0s", "-1h", "1w", "h", "", "soon"):
        with pytest.raises(ValueError, match="not a positive duration"):
            parse_ttl(bad)


def test_the_key_from_the_environment() -> None:
    assert key_from_env({}) is None
    assert key_from_env({KEY_ENV: ""}) is None
    assert key_from_env({KEY_ENV: "k" * 20}) == b"k" * 20
    with pytest.raises(ForceKeyError, match=r"\$FLAGSTAFF_FORCE_KEY is 3 bytes"):
        key_from_env({KEY_ENV: "abc"})


# --------------------------------------------------------------------------- the command


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_force_token_prints_a_token_that_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    code, out, _ = run("force-token", "try_forced", "--ttl", "2h")
    assert code == 0
    token = out.strip()
    assert verify(token, KEY) == "try_forced"
    expiry = int(token.split(".")[1])
    assert 7190 < expiry - time.time() <= 7200
    assert verify(token, OTHER) is None


def test_force_token_json_and_another_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("QA_KEY", OTHER.decode())
    code, out, _ = run("--json", "force-token", "big", "--ttl", "15m", "--key-env", "QA_KEY")
    assert code == 0
    data = json.loads(out)
    assert data["value"] == "big" and verify(data["token"], OTHER) == "big"
    assert data["token"].split(".")[1] == str(data["expires_at"])
    assert data["expires"].endswith("Z")


def test_force_token_without_a_usable_key_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    code, out, err = run("force-token", "x")
    assert (code, out) == (2, "") and "set $FLAGSTAFF_FORCE_KEY" in err
    monkeypatch.setenv(KEY_ENV, "tooshort")
    code, out, err = run("force-token", "x")
    assert (code, out) == (2, "") and "8 bytes; a forcing key needs at least 16" in err
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    assert run("force-token", "x", "--ttl", "0")[0] == 2
    assert run("force-token", "x", "--ttl", "soon")[0] == 2
    assert run("force-token", "x" * (MAX_VALUE_LENGTH + 1))[0] == 2


def test_only_the_spelling_sign_wrote_verifies() -> None:
    # The signature's last base64 character carries 2 spare bits: a token differing there
    # decodes to the same bytes, and must still be refused (it is not what sign() wrote).
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    key = b"k" * 32
    for now in range(200):
        token = forcing.sign("v", key, 60, now=now)
        last = alphabet.index(token[-1])
        twin = token[:-1] + alphabet[last ^ 1]  # differs only in a spare bit
        assert forcing.verify(token, key, now=now) == "v"
        assert forcing.verify(twin, key, now=now) is None
    value, expiry, sig = forcing.sign("vv", key, 60, now=0).split(".")
    assert (
        forcing.verify(f"{value[:-1]}{alphabet[alphabet.index(value[-1]) ^ 1]}.{expiry}.{sig}", key, now=0)
        is None
    )
