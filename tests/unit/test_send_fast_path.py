"""The send routes' fast path in front of FastAPI: the common case served without the
framework, everything else handed over with its body, errors worded by the app's handlers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from worker.api.app import create_app
from worker.api.deps import RedisDep, SenderDep
from worker.api.routes import push, whatsapp, whatsapp_callbacks
from worker.api.routes.whatsapp_callbacks import CALLBACK_PATH
from worker.api.send_route import SendFastPath, SendRoute
from worker.config import Settings
from worker.models import WhatsAppSendRequest
from worker.store.client import create_redis

BODY = {"to": "+14155552671", "template_name": "order_confirmation", "parameters": []}


class Witness:
    """Middleware: which requests the FastAPI application itself served, into ``seen``."""

    def __init__(self, app: Any, seen: list[str]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


def _app(settings: Settings, seen: list[str]) -> FastAPI:
    """The API's application, watched by a ``Witness``, with its state as at startup."""
    app = create_app(settings)
    app.add_middleware(Witness, seen=seen)
    app.state.settings = settings
    app.state.redis = create_redis(settings)
    return app


def test_valid_sends_skip_the_framework_and_the_rest_reaches_it(settings: Settings) -> None:
    seen: list[str] = []

    async def scenario() -> None:
        app = _app(settings, seen)
        fast = SendFastPath(app, [whatsapp.router, push.router])
        transport = httpx.ASGITransport(app=fast)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            url = "/api/v1/channels/whatsapp/send"
            # A valid body: served here; the unknown key is refused by the app's own handler.
            refused = await client.post(url, json=BODY, headers={"Authorization": "Bearer msk_x"})
            assert refused.status_code == 401
            assert refused.json() == {
                "success": False,
                "error": "Invalid API key",
                "code": "unauthorized",
            }
            assert seen == []
            # A body that does not validate: FastAPI reads it (replayed) and words the error.
            broken = await client.post(
                url,
                content=b'{"to": "+1415',
                headers={"Content-Type": "application/json", "Authorization": "Bearer msk_x"},
            )
            assert broken.status_code == 400
            assert broken.json()["code"] == "invalid_json"
            bad_field = await client.post(
                url, json={**BODY, "to": 12}, headers={"Authorization": "Bearer msk_x"}
            )
            assert bad_field.status_code == 401  # FastAPI's order: the key before the fields
            assert seen == [f"POST {url}", f"POST {url}"]
            assert (await client.get(url)).status_code == 405
            assert (await client.get("/healthz")).status_code == 200
            assert seen[2:] == [f"GET {url}", "GET /healthz"]
        await app.state.redis.aclose()

    asyncio.run(scenario())


def test_a_send_route_the_fast_path_cannot_call_fails_when_the_app_is_built() -> None:
    """The fast path calls ``endpoint(body, caller)``: a send route with another shape is
    refused when the router is built, not answered with a 500 on every request."""

    async def with_a_query(body: WhatsAppSendRequest, caller: SenderDep, dry_run: bool) -> Any:
        return None

    async def without_the_sender(body: WhatsAppSendRequest, redis: RedisDep) -> Any:
        return None

    async def body_second(caller: SenderDep, body: WhatsAppSendRequest) -> Any:
        return None

    async def good(body: WhatsAppSendRequest, caller: SenderDep) -> Any:
        return None

    for endpoint, why in (
        (with_a_query, "its only other parameter must be `caller: SenderDep`"),
        (without_the_sender, "its only other parameter must be `caller: SenderDep`"),
        (body_second, "its first parameter must be `body: SomeModel`"),
    ):
        router = APIRouter(route_class=SendRoute)
        with pytest.raises(TypeError, match=re.escape(why)):
            router.post("/x")(endpoint)
    router = APIRouter(route_class=SendRoute, dependencies=[Depends(lambda: None)])
    with pytest.raises(TypeError, match="route dependencies"):
        router.post("/x")(good)
    APIRouter(route_class=SendRoute).post("/x")(good)  # the shape it can serve


def test_the_whatsapp_callback_is_served_whole_without_the_framework(settings: Settings) -> None:
    """Meta's status reports come two or three per message: the callback's POST is served
    here (its errors worded by the app's handlers); its verify GET still reaches FastAPI."""
    seen: list[str] = []

    async def scenario() -> None:
        app = _app(settings, seen)
        fast = SendFastPath(
            app,
            [whatsapp.router],
            plain={CALLBACK_PATH: whatsapp_callbacks.serve_callback},
        )
        transport = httpx.ASGITransport(app=fast)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            # Unsigned, then not JSON: the route's own refusals, worded by the app.
            unsigned = await client.post(CALLBACK_PATH, content=b"{}", headers=_JSON)
            assert unsigned.status_code == 401
            assert unsigned.json()["success"] is False
            broken = await client.post(CALLBACK_PATH, content=b"{", headers=_SIGNED)
            assert broken.status_code == 400
            assert broken.json()["code"] == "invalid_json"
            # Numbers no account here owns: taken, nothing recorded.
            nobody = {"object": "whatsapp_business_account", "entry": []}
            taken = await client.post(CALLBACK_PATH, json=nobody, headers=_SIGNED)
            assert (taken.status_code, taken.json()) == (
                200,
                {"success": True, "messages": 0, "statuses": 0},
            )
            assert seen == []
            verify = await client.get(CALLBACK_PATH, params={"hub.mode": "subscribe"})
            assert verify.status_code in (400, 403)
            assert seen == [f"GET {CALLBACK_PATH}"]
        await app.state.redis.aclose()

    asyncio.run(scenario())


def test_a_plain_path_the_app_does_not_serve_is_refused_when_built(settings: Settings) -> None:
    app = create_app(settings)
    with pytest.raises(RuntimeError, match="/webhooks/nowhere"):
        SendFastPath(app, [], plain={"/webhooks/nowhere": whatsapp_callbacks.serve_callback})


_JSON = {"Content-Type": "application/json"}
_SIGNED = {**_JSON, "X-Hub-Signature-256": "sha256=" + "0" * 64}
