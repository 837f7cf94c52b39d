"""An ASGI (Starlette) app: one scope per request, many requests at once in one loop.

Run: python examples/web_starlette.py         (concurrent requests in-process through httpx)
     python examples/web_starlette.py serve   (uvicorn; then open http://127.0.0.1:8003/?user=alice)
"""

import asyncio
import sys
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import flagstaff
from flagstaff.admin import Admin
from flagstaff.integrations import flags
from flagstaff.integrations.asgi import FlagsMiddleware
from flagstaff.stores import open_store

# Each web example's `serve` has its own port, clear of `flagstaff serve` (8000).
PORT = 8003

store = open_store("memory://starlette-example")
Admin(store).set("new_checkout", {"users": ["alice"]})
client = flagstaff.connect(store)


def who(connection):  # the ASGI scope; an auth middleware would have put the user in it
    user = parse_qs(connection["query_string"].decode()).get("user", [None])[0]
    return {"user_id": user} if user else None


async def home(request):
    await asyncio.sleep(0.01)  # other requests run meanwhile; each keeps its own scope
    return PlainTextResponse("new checkout" if flags.is_enabled("new_checkout") else "old checkout")


app = Starlette(
    routes=[Route("/", home)], middleware=[Middleware(FlagsMiddleware, client=client, context=who)]
)


async def demo():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as web:
        queries = ["?user=alice", "?user=bob", "", "?user=alice"]
        responses = await asyncio.gather(*(web.get("/" + q) for q in queries))
    for query, response in zip(queries, responses, strict=True):
        print(f"GET /{query:<12} -> {response.text}")


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        import uvicorn

        uvicorn.run(app, port=PORT)
    else:
        asyncio.run(demo())
    client.close()
