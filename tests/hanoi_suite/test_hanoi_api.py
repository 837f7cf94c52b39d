"""hanoi 0.0.4 ``tests/api.py``, rewritten for pytest against flagstaff.compat.hanoi.

See README.md here: names and inputs follow the original test by test; the one
flipped test (the inverted percentage rule) says so in its docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flagstaff.compat.hanoi import (
    Feature,
    MemoryBackEnd,
    RedisBackEnd,
    RedisHighPerfBackEnd,
    Rollout,
    RolloutException,
)


class Foo:
    """hanoi's test item: an ``id`` attribute, and ``repr`` is the id."""

    def __init__(self, id: str) -> None:
        self.id = id

    def __repr__(self) -> str:
        return self.id


FN = "foo"


class FeatureTestCase:
    def test_is_enabled_by_default(self) -> None:
        f = Feature("foo", lambda x: True, "100")
        assert f.enabled

    def test_name_is_valid_as_a_string(self) -> None:
        assert Feature("foo", lambda x: True, "100").name == "foo"

    def test_name_is_valid_as_unicode(self) -> None:
        assert Feature("üéê", lambda x: True, "100").name == "üéê"

    def test_name_cannot_be_None(self) -> None:  # noqa: N802 (hanoi's name)
        with pytest.raises(AttributeError):
            Feature(None, lambda x: True, "100")  # type: ignore[arg-type]

    def test_name_should_be_a_string(self) -> None:
        with pytest.raises(AttributeError):
            Feature(1, lambda x: True, "100")  # type: ignore[arg-type]

    def test_name_is_read_only(self) -> None:
        f = Feature("foo", lambda x: True, 20)
        with pytest.raises(RuntimeError):
            f.name = "bar"

    def test_percentage_is_casted_to_integer_if_valid_number_as_string(self) -> None:
        f = Feature("foo", lambda x: True, "100")
        assert f.percentage == 100
        assert type(f.percentage) is int

    def test_percentage_should_be_a_number(self) -> None:
        with pytest.raises(AttributeError):
            Feature("foo", lambda x: True, "bar")

    def test_percentage_should_be_lower_than_100(self) -> None:
        with pytest.raises(AttributeError):
            Feature("foo", lambda x: True, 101)

    def test_percentage_should_be_greater_than_0(self) -> None:
        with pytest.raises(AttributeError):
            Feature("foo", lambda x: True, -1)

    def test_cannot_set_invalid_attributes(self) -> None:
        f = Feature("foo", lambda x: True, 100)
        with pytest.raises(AttributeError):
            f.bar  # type: ignore[attr-defined]  # noqa: B018


class _Common:
    """The tests that are the same in hanoi's three Rollout classes."""

    rollout: Rollout
    wrap: Callable[[str], Any]

    def test_backend_should_not_be_none(self) -> None:
        rollout = Rollout(None)
        with pytest.raises(TypeError):
            rollout.backend  # noqa: B018

    def test_enable_a_functionality(self) -> None:
        self.rollout.enable(FN)
        assert self.rollout.is_enabled(FN)

    def test_disable_a_functionality(self) -> None:
        self.rollout.disable(FN)
        assert not self.rollout.is_enabled(FN)

    def test_toggle_a_functionality(self) -> None:
        assert self.rollout.is_enabled(FN)
        self.rollout.toggle(FN)
        assert not self.rollout.is_enabled(FN)
        self.rollout.toggle(FN)
        assert self.rollout.is_enabled(FN)

    def test_set_percentage_to_100(self) -> None:
        self.rollout.set_percentage(FN, 100)
        assert self.rollout.is_enabled("foo") is True

    def test_set_percentage_to_0_func_is_still_enabled(self) -> None:
        self.rollout.set_percentage(FN, 0)
        assert self.rollout.is_enabled("foo")
        assert not self.rollout.is_enabled("foo", self.wrap("bar"))

    def test_set_percentage_to_101(self) -> None:
        with pytest.raises(AttributeError):
            self.rollout.set_percentage(FN, 101)

    def test_set_percentage_to_negative(self) -> None:
        with pytest.raises(AttributeError):
            self.rollout.set_percentage(FN, -1)

    def test_a_functionality_with_percentage_100_enabled(self) -> None:
        self.rollout.enable(FN)
        self.rollout.set_percentage(FN, 100)
        for i in range(100):
            assert self.rollout.is_enabled("foo", str(i)) is True

    def test_a_functionality_with_percentage_100_disabled(self) -> None:
        self.rollout.enable(FN)
        self.rollout.set_percentage(FN, 0)
        for i in range(100):
            assert not self.rollout.is_enabled("foo", self.wrap(str(i)))

    def test_a_functionality_with_percentage_50_disabled(self) -> None:
        self.rollout.disable(FN)
        self.rollout.set_percentage(FN, 50)
        for x in range(1, 100):
            u = Foo(str(x))
            self.rollout.register(FN, u)
            assert not self.rollout.is_enabled(FN, u)

    def test_is_enabled_to_a_register_user(self) -> None:
        self.rollout.add_func("bar")
        u = self.wrap("bazz")
        self.rollout.register(FN, u)
        assert self.rollout.is_enabled(FN, u)

    def test_is_enabled_to_a_non_register_user(self) -> None:
        self.rollout.add_func("bar")
        self.rollout.register(FN, self.wrap("bazz"))
        assert not self.rollout.is_enabled(FN, self.wrap("bazzbazz"))

    def test_add_a_user_to_a_disabled_functionality(self) -> None:
        self.rollout.disable(FN)
        assert not self.rollout.is_enabled(FN)
        assert not self.rollout.is_enabled(FN, "foo")

    def test_set_a_rule_to_a_functionality_user_matches(self) -> None:
        self.rollout.register(FN, re.compile("00$"))
        assert self.rollout.is_enabled(FN, self.wrap("0000000"))

    def test_set_a_rule_to_a_functionality_user_does_not_match(self) -> None:
        self.rollout.register(FN, re.compile("00$"))
        assert not self.rollout.is_enabled(FN, self.wrap("0000010"))

    def test_set_a_rule_user_does_not_match_but_is_whitelisted(self) -> None:
        self.rollout.register(FN, "0000010")
        self.rollout.register(FN, re.compile("00$"))
        assert self.rollout.is_enabled(FN, self.wrap("0000010"))

    def test_set_a_rule_overrides_previous_rule(self) -> None:
        self.rollout.register(FN, re.compile("00$"))
        assert not self.rollout.is_enabled(FN, self.wrap("0000010"))
        self.rollout.register(FN, re.compile("10$"))
        assert self.rollout.is_enabled(FN, self.wrap("0000010"))

    def test_decorator_enabled_decorator_when_feature_enabled(self) -> None:
        @self.rollout.enabled(FN)
        def foo(name: str) -> str:
            return name

        assert foo("bazz") == "bazz"

    def test_decorator_enabled_decorator_when_feature_not_exist(self) -> None:
        @self.rollout.enabled("bar")
        def foo(name: str) -> str:
            return name

        with pytest.raises(RolloutException):
            foo("bazz")

    def test_decorator_enabled_decorator_when_feature_disabled(self) -> None:
        @self.rollout.enabled(FN)
        def foo(name: str) -> str:
            return name

        self.rollout.disable(FN)
        with pytest.raises(RolloutException):
            foo("bazz")

    def test_decorator_check_with_current_id(self) -> None:
        @self.rollout.check(FN)
        def foo(name: str) -> str:
            return name

        self.rollout.set_current_id(self.wrap("bar"))
        self.rollout.register(FN, self.wrap("bar"))
        assert foo("bazz") == "bazz"

    def test_decorator_check_with_argument(self) -> None:
        @self.rollout.check(FN, 1)
        def foo(name: Foo) -> str:
            return name.id

        self.rollout.set_current_id("foo")
        self.rollout.register(FN, "bar")
        assert foo(Foo("bar")) == "bar"


def _identity(x: str) -> str:
    return x


class RolloutTestCase(_Common):
    """Memory backend; items are plain strings where hanoi used strings."""

    wrap = staticmethod(_identity)

    @pytest.fixture(autouse=True)
    def _setup(self) -> Iterator[None]:
        self.rollout = Rollout(MemoryBackEnd())
        self.rollout.add_func(FN, "id")
        yield
        self.rollout.backend.close()

    def test_register_a_functionality(self) -> None:
        assert len(self.rollout.backend.get_functionalities()) == 1

    def test_register_two_functionalities(self) -> None:
        self.rollout.add_func("bar", lambda x: x.id, percentage=0)
        names = self.rollout.backend.get_functionalities()
        assert len(names) == 2
        assert FN in names and "bar" in names

    def test_overrides_a_functionality_with_same_name(self) -> None:
        self.rollout.add_func(FN, lambda x: x.id)
        assert len(self.rollout.backend.get_functionalities()) == 1

    def test_a_functionality_with_percentage_50_enabled(self) -> None:
        """FLIPPED: hanoi 0.0.4 expected Foo("1") (bucket 83) in and Foo("2")
        (bucket 37) out at 50%, its inverted ``>=`` rule. The README's rule,
        ``bucket < 50``, gives the opposite."""
        self.rollout.enable(FN)
        self.rollout.set_percentage(FN, 50)
        assert not self.rollout.is_enabled(FN, Foo("1"))
        assert self.rollout.is_enabled(FN, Foo("2"))


class _RedisRollout(_Common):
    """Shared set-up of hanoi's two Redis Rollout classes: Foo items."""

    wrap = Foo
    backend_class: type[RedisBackEnd] = RedisBackEnd

    @pytest.fixture(autouse=True)
    def _setup(self, clean_redis: str) -> Iterator[None]:
        self.rollout = Rollout(self.backend_class(clean_redis))
        self.rollout.add_func(FN, "id")
        yield
        self.rollout.backend.close()

    def test_a_functionality_with_percentage_50_enabled(self) -> None:
        self.rollout.enable(FN)
        self.rollout.set_percentage(FN, 50)
        user = Foo("1")
        self.rollout.register(FN, user)
        assert self.rollout.is_enabled(FN, user)
        u = Foo("2")
        self.rollout.register(FN, u)
        assert self.rollout.is_enabled(FN, u)


class RolloutWithRedisTestCase(_RedisRollout):
    backend_class = RedisBackEnd

    def test_register_a_functionality(self) -> None:
        assert len(self.rollout.backend.get_functionalities()) == 1

    def test_register_two_functionalities(self) -> None:
        self.rollout.add_func("bar", "id", percentage=0)
        names = self.rollout.backend.get_functionalities()
        assert len(names) == 2
        assert FN in names and "bar" in names

    def test_overrides_a_functionality_with_same_name(self) -> None:
        self.rollout.add_func(FN, "id")
        assert len(self.rollout.backend.get_functionalities()) == 1


class RolloutWithRedisHighPerfTestCase(_RedisRollout):
    backend_class = RedisHighPerfBackEnd

    def test_register_a_functionality(self) -> None:
        assert self.rollout.backend.get_functionality(FN) is not None

    def test_register_two_functionalities(self) -> None:
        self.rollout.add_func("bar", "id", percentage=0)
        for fn in (FN, "bar"):
            assert self.rollout.backend.get_functionality(fn) is not None

    def test_overrides_a_functionality_with_same_name(self) -> None:
        self.rollout.add_func(FN, "id2")
        feature = self.rollout.backend.get_functionality(FN)
        assert feature is not None and feature.field == "id2"

    def test_create_feature_with_variants(self) -> None:
        variants = ["BAR", "BAZZ"]
        self.rollout.add_func("bar", variants=variants)
        self.rollout.set_percentage("bar", 100)
        assert self.rollout.variant("bar", "user") in variants
