"""flagstaff.aio: awaitable connect, close and wait_for_change over the sync client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from flagstaff import aio
from flagstaff.errors import ClientError
from tests._support.web import FlagWorld, flag_world

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def world() -> Iterator[FlagWorld]:
    with flag_world() as w:
        yield w


def test_connect_evaluate_and_close(world: FlagWorld) -> None:
    async def main() -> None:
        async with await aio.connect(world.store.url, timeout=5) as client:
            assert client.is_enabled("everyone") is True
            assert client.is_enabled("alice_only", "alice") is True
            assert client.variant("theme", "alice") == "dark"
            assert client.evaluate("alice_only", "bob").enabled is False
            assert set(client.all("alice")) == set(world.client.snapshot.flags)
            assert client.status().flags == len(world.client.snapshot)
            assert client.snapshot.revision == world.client.snapshot.revision
            with client.scope("alice"):
                assert client.is_enabled("alice_only") is True
            assert "AsyncClient" in repr(client)
        assert client.client._closed

    asyncio.run(main())


def test_wait_for_change_returns_the_new_decision_without_blocking_the_loop(world: FlagWorld) -> None:
    async def main() -> tuple[object, float]:
        client = aio.AsyncClient(world.client)
        waiting = asyncio.create_task(client.wait_for_change("nobody", timeout=60))
        started = time.monotonic()
        await asyncio.sleep(0.1)  # would last the whole 60 s wait if the wait held the loop
        slept = time.monotonic() - started
        assert not waiting.done()
        await asyncio.to_thread(world.set, "nobody", "on")
        return await asyncio.wait_for(waiting, 30), slept

    decision, slept = asyncio.run(main())
    assert decision is not None and decision.enabled is True
    assert slept < 30


def test_wait_for_change_times_out_with_none(world: FlagWorld) -> None:
    async def main() -> object:
        return await aio.AsyncClient(world.client).wait_for_change("nobody", timeout=0.2)

    started = time.monotonic()
    assert asyncio.run(main()) is None
    assert time.monotonic() - started < 20


def test_cancelling_a_wait_returns_at_once_and_a_later_wait_still_works(world: FlagWorld) -> None:
    async def main() -> object:
        client = aio.AsyncClient(world.client)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.wait_for_change("nobody", timeout=30), 0.1)
        waiting = asyncio.create_task(client.wait_for_change("nobody", timeout=30))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(world.set, "nobody", {"users": ["alice"]})
        await asyncio.to_thread(world.set, "nobody", "on")
        return await asyncio.wait_for(waiting, 30)

    decision = asyncio.run(main())
    assert decision is not None and decision.flag == "nobody"


def test_closing_wakes_waiters_and_later_waits_raise(world: FlagWorld) -> None:
    async def main() -> None:
        client = aio.AsyncClient(world.client)
        waiting = asyncio.create_task(client.wait_for_change("nobody", timeout=30))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await client.aclose()
        assert await asyncio.wait_for(waiting, 20) is None
        assert time.monotonic() - started < 20
        with pytest.raises(ClientError, match="closed"):
            await client.wait_for_change("nobody", timeout=1)
        await client.aclose()  # idempotent

    asyncio.run(main())


def test_on_change_is_the_clients(world: FlagWorld) -> None:
    seen: list[frozenset[str]] = []

    async def main() -> None:
        client = aio.AsyncClient(world.client)
        unsubscribe = client.on_change(lambda change: seen.append(change.names))
        await asyncio.to_thread(world.set, "nobody", "on")
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
        unsubscribe()

    asyncio.run(main())
    assert frozenset({"nobody"}) in seen
