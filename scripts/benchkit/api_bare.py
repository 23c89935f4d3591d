"""The API's ceiling: a bare FastAPI endpoint doing one LPUSH, served like `dispatch api`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from worker.config import get_settings
from worker.store.client import create_redis


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = create_redis(get_settings())
    yield
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/bare")
async def bare(request: Request) -> JSONResponse:
    await request.app.state.redis.lpush("bench:bare", await request.body())
    return JSONResponse({"success": True}, 202)
