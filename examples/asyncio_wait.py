"""asyncio: evaluate without awaiting, await a change without blocking the loop.

Run: python examples/asyncio_wait.py
"""

import asyncio

from flagstaff import aio
from flagstaff.admin import Admin
from flagstaff.stores import open_store


async def main():
    store = open_store("memory://asyncio-example")
    admin = Admin(store, author="ops")
    admin.set("maintenance_banner", "off")
    async with await aio.connect(store) as client:
        print("banner on?", client.is_enabled("maintenance_banner"))  # a plain call: never blocks
        waiting = asyncio.create_task(client.wait_for_change("maintenance_banner", timeout=10))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(admin.set, "maintenance_banner", "on")  # someone flips it
        decision = await waiting
        print("changed:", decision.enabled, decision.reason)
    store.close()


asyncio.run(main())
