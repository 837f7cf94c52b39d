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
    admin.set("dark_mode", "off")
    async with await aio.connect(store) as client:
        print("dark mode on?", client.is_enabled("dark_mode"))  # a plain call: never blocks
        waiting = asyncio.create_task(client.wait_for_change("dark_mode", timeout=10))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(admin.set, "dark_mode", "on")  # someone flips it
        decision = await waiting
        print("changed:", decision.enabled, decision.reason)
    store.close()


asyncio.run(main())
