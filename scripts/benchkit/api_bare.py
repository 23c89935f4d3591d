"""The API's baselines, each one LPUSH of the request body, served by uvicorn as
`dispatch api` is (one process, httptools, no access log):

- ``raw_app``: a bare ASGI callable, the floor of this stack (uvicorn + redis-py): what
  any endpoint that stores a request costs here, with no framework at all;
- ``app``: the same endpoint as a user would write it in FastAPI (information: how much
  of the framework our send path avoids).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from worker.config import get_settings
from worker.observe.heap import freeze_startup
from worker.store.client import create_redis

LIST = "bench:bare"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = create_redis(get_settings())
    freeze_startup()  # as the real API does
    yield
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/bare")
async def bare(request: Request) -> JSONResponse:
    await request.app.state.redis.lpush(LIST, await request.body())
    return JSONResponse({"success": True}, 202)


_ACCEPTED = {
    "type": "http.response.start",
    "status": 202,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"16")],
}
_BODY = {"type": "http.response.body", "body": b'{"success":true}'}
_redis: list[Redis] = []


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _redis.append(create_redis(get_settings()))
                freeze_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _redis[0].aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await _redis[0].lpush(LIST, body)
    await send(_ACCEPTED)
    await send(_BODY)
