"""How a Context is built: normalised once, frozen once built, copied and pickled whole."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from flagstaff import Context
from flagstaff.context import FIELDS, to_context

FULL = Context(
    user_id="u1",
    user_name="Ann",
    groups=frozenset({"beta"}),
    logged_in=True,
    cookie_id="c1",
    features=("x",),
    subdomain="eu",
    location="pics",
    oauth_client="app",
    time=1_700_000_000.0,
    attributes={"plan": "pro"},
)


def test_every_field_is_frozen_once_built() -> None:
    for name in (*FIELDS, "user_key", "cookie_key"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(FULL, name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(FULL, name)
    assert type(FULL) is Context
    assert FULL.user_id == "u1" and FULL.user_key == b"u1" and FULL.cookie_key == b"c1"


def test_loose_input_is_normalised() -> None:
    ctx = Context(
        user_id=7, groups=["a", "b"], features="f", time="2027-01-01T00:00:00Z", attributes={"k": 1}
    )  # type: ignore[arg-type]
    assert ctx.user_id == "7" and ctx.user_key == b"7"
    assert ctx.groups == frozenset({"a", "b"}) and ctx.features == ("f",)
    assert ctx.time == 1798761600.0
    assert dict(ctx.attributes) == {"k": 1}
    assert Context(user_id="").user_id is None and Context(user_id="").logged_in is False
    with pytest.raises(ValueError, match="ISO 8601"):
        Context(time="not a time")  # type: ignore[arg-type]


def test_copies_and_pickles_keep_every_field() -> None:
    assert copy.copy(FULL) is FULL and copy.deepcopy(FULL) is FULL
    again = pickle.loads(pickle.dumps(FULL))
    assert again == FULL and again is not FULL and type(again) is Context
    assert (again.user_key, again.cookie_key) == (b"u1", b"c1")
    assert dataclasses.replace(FULL, user_id="u2").user_key == b"u2"
    assert dataclasses.replace(FULL, user_id="u2").attributes == FULL.attributes


def test_a_subclass_is_built_with_the_same_fields() -> None:
    class Tagged(Context):
        extra: Any = None  # a subclass may add a __dict__ (no __slots__ here)

    ctx = Tagged(user_id="u9", groups=["g"])
    assert type(ctx) is Tagged and ctx.user_key == b"u9" and ctx.groups == frozenset({"g"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.user_id = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(Context(user_id="u9"))) == Context(user_id="u9")


def test_a_bare_id_gets_the_context_the_constructor_builds() -> None:
    # to_context's shared contexts for a bare id (and {"user_id": id}) skip the constructor's
    # keywords and checks: they must still be the very context Context(user_id=id) is.
    for uid in ("u1", "42", "é", "\udc80x", " spaced "):
        for given in (uid, {"user_id": uid}):
            ctx = to_context(given)
            assert type(ctx) is Context and ctx == Context(user_id=uid), uid
            assert (ctx.user_key, ctx.cookie_key, ctx.logged_in) == (
                Context(user_id=uid).user_key,
                None,
                True,
            )
            with pytest.raises(dataclasses.FrozenInstanceError):
                ctx.user_id = "other"  # type: ignore[misc]
    assert to_context("") == Context() and to_context("").logged_in is False
    assert to_context({"user_id": ""}) == Context()
