"""hanoi 0.0.4 ``tests/backend.py``, rewritten for pytest against flagstaff.compat.hanoi.

See README.md here: names and inputs follow the original test by test; flipped
tests say so in their docstrings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from flagstaff.compat.hanoi import Feature, MemoryBackEnd, RedisBackEnd, RedisHighPerfBackEnd

FOO = "FOO"
VARIANTS = ["foo", "bar", "bazz"]


class MemoryBackEndTestCase:
    @pytest.fixture(autouse=True)
    def _setup(self) -> Iterator[None]:
        self.backend = MemoryBackEnd()
        yield
        self.backend.close()

    def test_retrieve_a_variant(self) -> None:
        self.backend.add_functionality(Feature(FOO, variants=VARIANTS))
        f = self.backend.get_functionality(FOO)
        assert f is not None and f.name == FOO and f.percentage == 100
        assert f.variants is not None
        assert self.backend.variant(FOO, "juan") in f.variants
        assert self.backend.variant(FOO, "juan2") in f.variants

    def test_retrieve_a_variant_is_none_if_disabled(self) -> None:
        self.backend.add_functionality(Feature(FOO, percentage=0, variants=VARIANTS))
        f = self.backend.get_functionality(FOO)
        assert f is not None and f.name == FOO
        assert self.backend.variant(FOO, "juan") is None
        assert self.backend.variant(FOO, "juan2") is None


class _RedisCommon:
    """Tests that are the same in hanoi's two Redis backend classes."""

    backend: RedisBackEnd

    def _feature(self, name: str) -> Feature:
        f = self.backend.get_functionality(name)
        assert f is not None
        return f

    def test_is_enabled_func_does_not_exist(self) -> None:
        assert not self.backend.is_enabled(FOO)

    def test_is_enabled_func_exists(self) -> None:
        self.backend.add_functionality(Feature(FOO))
        assert self.backend.is_enabled(FOO)

    def test_is_enabled_func_exists_but_is_disabled(self) -> None:
        func = Feature(FOO, None, 50)
        func.enabled = False
        self.backend.add_functionality(func)
        assert not self.backend.is_enabled(FOO)

    def test_is_enabled_func_in_an_user_not_added_but_percentage_is_100(self) -> None:
        self.backend.add_functionality(Feature(FOO, None, 100))
        assert self.backend.is_enabled(FOO, "bar")

    def test_is_enabled_func_in_an_user_not_added(self) -> None:
        self.backend.add_functionality(Feature(FOO, None, 0))
        assert not self.backend.is_enabled(FOO, "bar")

    def test_is_enabled_func_in_an_user_added(self) -> None:
        self.backend.add_functionality(Feature(FOO, None, 0))
        self.backend.add(FOO, "bar")
        assert self.backend.is_enabled(FOO, "bar")

    def test_is_enabled_func_in_an_user_with_an_enabled_rule_that_matches(self) -> None:
        self.backend.add_functionality(Feature(FOO, None, 0))
        self.backend.set_rule(FOO, re.compile(r"00$"))
        assert self.backend.is_enabled(FOO, "4400")

    def test_is_enabled_func_in_an_user_with_an_enabled_rule_that_doesnt_match(self) -> None:
        self.backend.add_functionality(Feature(FOO, None, 0))
        self.backend.set_rule(FOO, re.compile(r"00$"))
        assert not self.backend.is_enabled(FOO, "44001")

    def test_is_enabled_func_in_an_user_that_matches_the_percentage(self) -> None:
        """FLIPPED: hanoi 0.0.4 expected '0' (bucket 9) *out* at 50%, its inverted
        ``>=`` rule; with the README's ``bucket < 50`` it is in."""
        self.backend.add_functionality(Feature(FOO, None, 50))
        assert self.backend.is_enabled(FOO, "0")

    def test_is_enabled_func_in_an_user_that_does_match_the_percentage(self) -> None:
        """FLIPPED: hanoi 0.0.4 expected '1' (bucket 83) *in* at 50%; with the
        README's ``bucket < 50`` it is out."""
        self.backend.add_functionality(Feature(FOO, None, 50))
        assert not self.backend.is_enabled(FOO, "1")

    def test_disable(self) -> None:
        self.backend.add_functionality(Feature(FOO))
        self.backend.disable(FOO)
        assert not self.backend.is_enabled(FOO)

    def test_enable(self) -> None:
        func = Feature(FOO, None, 50)
        func.enabled = False
        self.backend.add_functionality(func)
        assert not self.backend.is_enabled(FOO)
        self.backend.enable(FOO)
        assert self.backend.is_enabled(FOO)

    def test_toggle(self) -> None:
        self.backend.add_functionality(Feature(FOO))
        assert self.backend.is_enabled(FOO)
        self.backend.toggle(FOO)
        assert not self.backend.is_enabled(FOO)
        self.backend.toggle(FOO)
        assert self.backend.is_enabled(FOO)

    def test_retrieve_a_variant(self) -> None:
        self.backend.add_functionality(Feature(FOO, variants=VARIANTS))
        f = self._feature(FOO)
        assert f.name == FOO and f.percentage == 100 and f.variants is not None
        assert self.backend.variant(FOO, "juan") in f.variants
        assert self.backend.variant(FOO, "juan2") in f.variants

    def test_retrieve_a_variant_is_none_if_disabled(self) -> None:
        self.backend.add_functionality(Feature(FOO, percentage=0, variants=VARIANTS))
        assert self._feature(FOO).name == FOO
        assert self.backend.variant(FOO, "juan") is None
        assert self.backend.variant(FOO, "juan2") is None


class RedisBackEndTestCase(_RedisCommon):
    @pytest.fixture(autouse=True)
    def _setup(self, clean_redis: str) -> Iterator[None]:
        self.backend = RedisBackEnd(clean_redis)
        yield
        self.backend.close()

    def test_retrieve_empty_array_when_nofuncionality_added(self) -> None:
        assert self.backend.get_functionalities() == []

    def test_add_a_functionality(self) -> None:
        self.backend.add_functionality(Feature(FOO))
        assert len(self.backend.get_functionalities()) == 1
        f, users = self.backend._get_functionality(FOO)
        assert f.name == FOO and f.percentage == 100
        assert users == [] and isinstance(users, list)

    def test_add_a_functionality_with_percentage(self) -> None:
        self.backend.add_functionality(Feature(FOO, None, 50))
        assert len(self.backend.get_functionalities()) == 1
        f, users = self.backend._get_functionality(FOO)
        assert f.name == FOO and f.percentage == 50
        assert users == []

    def test_add_a_disabled_functionality_with_percentage(self) -> None:
        func = Feature(FOO, None, 50)
        func.enabled = False
        self.backend.add_functionality(func)
        assert len(self.backend.get_functionalities()) == 1
        f, users = self.backend._get_functionality(FOO)
        assert f.name == FOO and f.percentage == 50
        assert not f.enabled
        assert users == []

    def test_add_an_user(self) -> None:
        self.backend.add_functionality(Feature(FOO))
        assert len(self.backend.get_functionalities()) == 1
        _, users = self.backend._get_functionality(FOO)
        assert users == []
        self.backend.add(FOO, "bar")
        _, users = self.backend._get_functionality(FOO)
        assert isinstance(users, list) and len(users) == 1
        self.backend.add(FOO, "bazz")
        _, users = self.backend._get_functionality(FOO)
        assert users == ["bar", "bazz"]

    def test_add_existing_an_user(self) -> None:
        self.backend.add_functionality(Feature(FOO))
        assert len(self.backend.get_functionalities()) == 1
        _, users = self.backend._get_functionality(FOO)
        assert users == []
        self.backend.add(FOO, "bar")
        self.backend.add(FOO, "bar")
        _, users = self.backend._get_functionality(FOO)
        assert users == ["bar"]


class RedisHighPerfBackEndTestCase(_RedisCommon):
    @pytest.fixture(autouse=True)
    def _setup(self, clean_redis: str) -> Iterator[None]:
        self.backend = RedisHighPerfBackEnd(clean_redis)
        yield
        self.backend.close()

    def test_get_functionalities_not_implemented(self) -> None:
        """FLIPPED: hanoi's set-based backend could not list its features
        (``NotImplementedError``); this one can."""
        assert self.backend.get_functionalities() == []
        self.backend.add_functionality(Feature(FOO))
        assert self.backend.get_functionalities() == [FOO]

    def test_add_a_functionality(self) -> None:
        self.backend.add_functionality(Feature(FOO))
        f = self.backend._get_functionality(FOO)
        assert f.name == FOO and f.percentage == 100

    def test_add_a_functionality_with_percentage(self) -> None:
        self.backend.add_functionality(Feature(FOO, None, 50))
        f = self.backend._get_functionality(FOO)
        assert f.name == FOO and f.percentage == 50

    def test_add_a_functionality_with_one_user(self) -> None:
        self.backend.add_functionality(Feature(FOO, None, 0), ["bar"])
        assert self.backend.is_enabled(FOO, "bar") is True

    def test_add_a_functionality_with_a_hundred_users(self) -> None:
        users = ["bar" + str(i) for i in range(100)]
        self.backend.add_functionality(Feature(FOO, None, 0), users)
        for u in users:
            assert self.backend.is_enabled(FOO, u) is True
        assert self.backend.is_enabled(FOO, "bar100") is False

    def test_add_a_disabled_functionality_with_percentage(self) -> None:
        func = Feature(FOO, None, 50)
        func.enabled = False
        self.backend.add_functionality(func)
        f = self.backend._get_functionality(FOO)
        assert f.name == FOO and f.percentage == 50
        assert not f.enabled
        assert self.backend._redis.smembers("rollout:users:FOO") == set()

    def test_add_a_functionality_with_variants(self) -> None:
        self.backend.add_functionality(Feature(FOO, variants=VARIANTS))
        f = self.backend._get_functionality(FOO)
        assert f.name == FOO and f.percentage == 100
        assert all(v in f.variants for v in ("foo", "bar", "bazz"))

    def test_add_an_user(self) -> None:
        self.backend.add_functionality(Feature(FOO, percentage=0))
        self.backend.add(FOO, "bar")
        assert self.backend.is_enabled("FOO", "bar")
        assert not self.backend.is_enabled("FOO", "bazz")
        self.backend.add(FOO, "bazz")
        assert self.backend.is_enabled("FOO", "bazz")

    def test_add_an_existing_user(self) -> None:
        self.backend.add_functionality(Feature(FOO))
        self.backend.add(FOO, "bar")
        self.backend.add(FOO, "bar")
        assert self.backend.is_enabled("FOO", "bar")
