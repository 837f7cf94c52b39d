"""Fixtures of the hanoi suite: a throwaway redis-server for the Redis classes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from _servers import redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """The server's URL, its database emptied first (hanoi's setUp ran FLUSHDB)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    yield redis_url


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> object:
    """Collect hanoi's class names (``RolloutTestCase``…) as test classes."""
    if isinstance(obj, type) and name.endswith("TestCase") and not name.startswith("_"):
        return pytest.Class.from_parent(collector, name=name)
    return None
