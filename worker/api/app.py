"""The FastAPI application and what it holds for its lifetime (its Redis client), and the
ASGI application uvicorn serves: the send routes' fast path in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from worker.api import errors
from worker.api.guard import Guard
from worker.api.routes import (
    automations,
    campaigns,
    contacts,
    deadletters,
    keys,
    messages,
    ops,
    push,
    usage,
    webhooks,
    whatsapp,
    whatsapp_callbacks,
)
from worker.api.routes import settings as settings_routes
from worker.api.routes.whatsapp_callbacks import CALLBACK_PATH
from worker.api.send_route import SendFastPath
from worker.config import Settings, get_settings
from worker.observe import heap, metrics
from worker.providers.outbound import OutboundClient
from worker.store import secrets as store_secrets
from worker.store.client import create_redis


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        store_secrets.use(settings)
        metrics.initialize()
        app.state.redis = create_redis(settings)
        # For a webhook endpoint's test event, posted while the caller waits.
        app.state.outbound = OutboundClient(
            allow=settings.outbound_allow,
            deadline_s=settings.outbound_deadline_s,
            max_response_bytes=settings.outbound_max_response_bytes,
            max_connections=10,
        )
        heap.freeze_startup()
        try:
            yield
        finally:
            await app.state.outbound.aclose()
            await app.state.redis.aclose()

    app = FastAPI(
        title="multichannel-dispatch",
        version="0.1.0",
        summary="WhatsApp and push notifications for the email-marketing platform",
        lifespan=lifespan,
        # The schema is still built (the send routes' fast path checks it); only serving
        # it and the docs pages is a setting.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    errors.install(app)
    for module in (
        whatsapp,
        push,
        contacts,
        campaigns,
        automations,
        messages,
        deadletters,
        webhooks,
        keys,
        usage,
        settings_routes,
        whatsapp_callbacks,
        ops,
    ):
        app.include_router(module.router)

    return app


def serve_app() -> Guard:
    """What ``dispatch api`` serves (a uvicorn factory): the guard (limits and the key,
    before any body is read), then the send routes' fast path, then FastAPI."""
    settings = get_settings()
    app = create_app(settings)
    if not settings.api_send_fast_path:
        return Guard(app, app, settings)
    fast = SendFastPath(
        app,
        [whatsapp.router, push.router],
        plain={CALLBACK_PATH: whatsapp_callbacks.serve_callback},
    )
    return Guard(fast, app, settings)
