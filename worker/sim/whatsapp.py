"""A WhatsApp Business Cloud API (Graph API) stand-in.

It checks every rule of ``whatsapp_rules`` (the Graph API version, bearer token, phone
number id, body shape, template name, language, parameters and filled-in length, the
24-hour window for free-form text, the number's throughput and the pair rate to one
recipient) and answers with Meta's success body or Meta's error envelope. Numbers, templates and
inbound customer messages are set up through ``/_sim/whatsapp/…``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from worker.sim import whatsapp_rules
from worker.sim.rules import Refusal
from worker.sim.state import Fault, SimState

log = logging.getLogger(__name__)

WINDOW_S = 24 * 3600
# A status webhook not taken (an error, or an answer other than 200) is posted again after
# these waits: Meta keeps retrying, further and further apart, for about a day.
_WEBHOOK_RETRY_S = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
# Status webhooks go over a few kept-alive connections, as from a sender that delivers
# them at its own pace. httpx's default (100 connections, 20 kept alive) opened and closed
# a connection per webhook whenever the API fell behind: on a 2-core box that churn slowed
# the API and the simulator both, until Graph answers took over 1.5 s (2026-12-01).
_WEBHOOK_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16)

# code → (HTTP status, error type, message, details): Meta's wording where known.
ERRORS: dict[int, tuple[int, str, str, str]] = {
    1: (500, "OAuthException", "An unknown error occurred", "Please retry your request later."),
    2: (503, "OAuthException", "Service temporarily unavailable", "Please retry later."),
    4: (
        429,
        "OAuthException",
        "(#4) Application request limit reached",
        "The app has reached its API call rate limit.",
    ),
    80007: (
        429,
        "OAuthException",
        "(#80007) Rate limit issues",
        "The WhatsApp Business Account has reached its rate limit.",
    ),
    100: (400, "OAuthException", "(#100) Invalid parameter", "A parameter is missing or wrong."),
    131000: (500, "OAuthException", "Something went wrong", "Message failed to send."),
    131008: (
        400,
        "OAuthException",
        "(#131008) Required parameter is missing",
        "A required parameter is missing.",
    ),
    131009: (
        400,
        "OAuthException",
        "(#131009) Parameter value is not valid",
        "A parameter value is not valid.",
    ),
    131016: (
        503,
        "OAuthException",
        "(#131016) Service unavailable",
        "A service is temporarily unavailable.",
    ),
    131026: (
        400,
        "OAuthException",
        "(#131026) Message undeliverable",
        "Unable to deliver message: the recipient is not a WhatsApp user or uses an old app.",
    ),
    131031: (
        403,
        "OAuthException",
        "(#131031) Account has been locked",
        "The Business Account is restricted or disabled.",
    ),
    131047: (
        400,
        "OAuthException",
        "(#131047) Re-engagement message",
        "More than 24 hours have passed since the recipient last replied to the sender number.",
    ),
    131048: (
        429,
        "OAuthException",
        "(#131048) Spam rate limit hit",
        "Messages failed to send because there are restrictions on how many messages can "
        "be sent from this phone number.",
    ),
    131049: (
        400,
        "OAuthException",
        "(#131049) Meta chose not to deliver",
        "This message was not delivered to maintain healthy ecosystem engagement.",
    ),
    131050: (
        400,
        "OAuthException",
        "(#131050) User has stopped marketing messages",
        "The recipient has opted out of marketing messages.",
    ),
    131056: (
        429,
        "OAuthException",
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from this number to the same recipient.",
    ),
    132000: (
        400,
        "OAuthException",
        "(#132000) Number of parameters does not match the expected number of params",
        "The number of body parameters does not match the template.",
    ),
    132001: (
        404,
        "OAuthException",
        "(#132001) Template name does not exist in the translation",
        "The template does not exist in this language.",
    ),
    132015: (
        400,
        "OAuthException",
        "(#132015) Template is paused",
        "The template is paused due to low quality.",
    ),
    132016: (
        400,
        "OAuthException",
        "(#132016) Template is disabled",
        "The template has been disabled due to low quality.",
    ),
    130429: (
        429,
        "OAuthException",
        "(#130429) Rate limit hit",
        "Cloud API message throughput has been reached.",
    ),
    190: (401, "OAuthException", "Invalid OAuth access token - Cannot parse access token", ""),
    2500: (400, "OAuthException", "Unknown path components", ""),
    132005: (
        400,
        "OAuthException",
        "(#132005) Translated text too long",
        "The filled-in template text is too long.",
    ),
    132018: (
        400,
        "OAuthException",
        "(#132018) There was an issue with the parameters in your template.",
        "Param text cannot have new-line/tab characters or more than 4 consecutive spaces",
    ),
    368: (
        403,
        "OAuthException",
        "Temporarily blocked for policies violations",
        "The account is restricted.",
    ),
}

_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


class NumberSpec(BaseModel):
    waba_id: str
    access_token: str
    app_secret: str | None = None
    webhook_url: str | None = None
    display_phone_number: str = "15550000000"
    # After a successful send, post "sent" then "delivered" status webhooks.
    auto_status: bool = False
    # Meta's limits for the number: messages per second (80 by default, up to 1,000 for an
    # upgraded number) and the pair rate to one recipient.
    throughput_per_s: float = Field(default=whatsapp_rules.DEFAULT_THROUGHPUT_PER_S, gt=0)
    pair_interval_s: float = Field(default=whatsapp_rules.PAIR_INTERVAL_S, gt=0)
    pair_burst: int = Field(default=whatsapp_rules.PAIR_BURST, ge=1)


class TemplateSpec(BaseModel):
    waba_id: str
    name: str
    language: str = "en"
    category: str = "UTILITY"
    status: str = "APPROVED"
    body_text: str = ""


class InboundSpec(BaseModel):
    phone_number_id: str
    from_: str = Field(alias="from")
    text: str = "Hi"
    name: str = "Customer"


def error_envelope(code: int, message: str | None = None) -> tuple[int, dict[str, Any]]:
    status, kind, default_message, details = ERRORS.get(
        code, (400, "OAuthException", f"(#{code}) Error", "")
    )
    error: dict[str, Any] = {
        "message": message or default_message,
        "type": kind,
        "code": code,
        "fbtrace_id": base64.b32encode(secrets.token_bytes(10)).decode().rstrip("="),
    }
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if code in (1, 2, 131000, 131016):
        error["is_transient"] = True
    return status, {"error": error}


def _wamid() -> str:
    return (
        "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(18)).decode()
    )


class Bucket:
    """A token bucket: ``capacity`` at once, refilled at ``rate_per_s``."""

    def __init__(self, capacity: float, rate_per_s: float, now: float) -> None:
        self.capacity, self.rate_per_s = capacity, rate_per_s
        self.tokens, self.at = capacity, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate_per_s)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WhatsAppSim:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.numbers: dict[str, NumberSpec] = {}
        # waba id → (name, language) → template
        self.templates: dict[str, dict[tuple[str, str], TemplateSpec]] = {}
        # (phone number id, customer wa_id) → when the customer last wrote
        self.inbound: dict[tuple[str, str], float] = {}
        self.throughput: dict[str, Bucket] = {}  # phone number id → its sends
        self.pairs: dict[tuple[str, str], Bucket] = {}  # (number, recipient) → its sends
        self.router = self._build_router()
        self._tasks: set[asyncio.Task[None]] = set()
        # One client for every webhook: building one costs milliseconds of CPU (its TLS
        # context), which would stall the simulator's loop and skew every latency.
        self._webhook_client: httpx.AsyncClient | None = None

    # --- the Graph API ------------------------------------------------------

    def _refuse(self, entry: dict[str, Any], refused: Refusal) -> JSONResponse:
        entry["rule"] = refused.id
        return self._error(entry, int(refused.rule.error), message=refused.message or None)

    def _error(
        self,
        entry: dict[str, Any],
        code: int,
        retry_after_s: float | None = None,
        http_status: int | None = None,
        message: str | None = None,
    ) -> JSONResponse:
        status, body = error_envelope(code, message)
        status = http_status or status
        entry.update(status=status, error_code=code, retry_after_s=retry_after_s)
        headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None else None
        return JSONResponse(body, status, headers=headers)

    def _check_token(self, request: Request, tokens: set[str]) -> bool:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return scheme.lower() == "bearer" and token in tokens

    async def _apply_fault(self, fault: Fault, entry: dict[str, Any]) -> Response | None:
        entry["fault"] = fault.kind
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay_s)
            return None
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay_s)
            entry["status"] = 504
            return JSONResponse({"error": {"message": "Gateway timeout", "code": 2}}, 504)
        headers = (
            {"Retry-After": f"{fault.retry_after_s:g}"} if fault.retry_after_s is not None else {}
        )
        if fault.kind == "http":
            status = fault.http_status or 500
            entry.update(status=status, retry_after_s=fault.retry_after_s)
            return Response(fault.body or "", status, headers=headers)
        return self._error(entry, int(fault.code or 131000), fault.retry_after_s, fault.http_status)

    def _validate(self, number: NumberSpec, phone_number_id: str, body: Any) -> Refusal | None:
        """The rule Meta would refuse this body by, or None if it is acceptable."""
        refuse = whatsapp_rules.refusal
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return refuse("product")
        to = whatsapp_rules.to_digits(body)
        if to is None:
            return refuse("recipient")
        refused = whatsapp_rules.check_callback_data(body)
        if refused is not None:
            return refused
        kind = body.get("type", "text")
        if kind == "template":
            template = body.get("template")
            if not isinstance(template, dict) or not template.get("name"):
                return refuse("template_fields")
            language = (template.get("language") or {}).get("code")
            if not language:
                return refuse("template_fields")
            known = self.templates.get(number.waba_id, {}).get((template["name"], language))
            if known is None:
                return refuse("template_exists")
            if known.status == "PAUSED":
                return refuse("template_paused")
            if known.status != "APPROVED":
                return refuse("template_disabled")
            return whatsapp_rules.check_template_parameters(
                known.body_text, template.get("components")
            )
        if kind == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not text.get("body"):
                return refuse("text_body")
            if len(str(text["body"])) > whatsapp_rules.TEXT_MAX_CHARS:
                return refuse(
                    "text_length", "Param text['body'] must be at most 4096 characters long."
                )
            last = self.inbound.get((phone_number_id, to))
            if last is None or time.time() - last > WINDOW_S:
                return refuse("window")
            return None
        return refuse("message_type")

    def _rate(self, number: NumberSpec, phone_number_id: str, to: str) -> Refusal | None:
        """Meta's throughput per number, then its pair rate per recipient."""
        now = time.monotonic()
        bucket = self.throughput.get(phone_number_id)
        if bucket is None or bucket.rate_per_s != number.throughput_per_s:
            bucket = self.throughput[phone_number_id] = Bucket(
                number.throughput_per_s, number.throughput_per_s, now
            )
        if not bucket.take(now):
            return whatsapp_rules.refusal("throughput")
        pair = self.pairs.get((phone_number_id, to))
        if pair is None:
            pair = self.pairs[(phone_number_id, to)] = Bucket(
                number.pair_burst, 1 / number.pair_interval_s, now
            )
        if not pair.take(now):
            return whatsapp_rules.refusal("pair_rate")
        return None

    async def send(self, version: str, phone_number_id: str, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        to = str(body.get("to", "")).removeprefix("+") if isinstance(body, dict) else ""
        entry = self.state.record(
            "whatsapp",
            method="POST",
            path=request.url.path,
            version=version,
            phone_number_id=phone_number_id,
            to=to,
            body=body,
        )
        refused = whatsapp_rules.check_version(version)
        if refused is not None:
            return self._refuse(entry, refused)
        number = self.numbers.get(phone_number_id)
        if number is None:
            entry["auth"] = "unknown_number"
            return self._refuse(entry, whatsapp_rules.refusal("number"))
        if not self._check_token(request, {number.access_token}):
            entry["auth"] = "bad_token"
            return self._refuse(entry, whatsapp_rules.refusal("access_token"))
        entry["auth"] = "ok"
        fault = self.state.take_fault("whatsapp", {"phone_number_id": phone_number_id, "to": to})
        if fault is not None:
            response = await self._apply_fault(fault, entry)
            if response is not None:
                return response
        refused = self._validate(number, phone_number_id, body) or self._rate(
            number, phone_number_id, to
        )
        if refused is not None:
            return self._refuse(entry, refused)
        wamid = _wamid()
        entry.update(status=200, wamid=wamid)
        if number.auto_status and number.webhook_url:
            callback_data = body.get("biz_opaque_callback_data")
            self._spawn(self._post_statuses(phone_number_id, number, wamid, to, callback_data))
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}],
            }
        )

    async def list_templates(self, version: str, waba_id: str, request: Request) -> Response:
        entry = self.state.record("whatsapp", method="GET", path=request.url.path, waba_id=waba_id)
        tokens = {n.access_token for n in self.numbers.values() if n.waba_id == waba_id}
        if not tokens:
            return self._error(entry, 100)
        if not self._check_token(request, tokens):
            return self._error(entry, 190)
        items = sorted(self.templates.get(waba_id, {}).values(), key=lambda t: (t.name, t.language))
        limit = max(1, min(int(request.query_params.get("limit", "25")), 1000))
        after = request.query_params.get("after")
        start = int(base64.urlsafe_b64decode(after).decode()) if after else 0
        page = items[start : start + limit]
        body: dict[str, Any] = {
            "data": [
                {
                    "name": t.name,
                    "language": t.language,
                    "status": t.status,
                    "category": t.category,
                    "id": str(
                        int(
                            hashlib.sha1(
                                f"{waba_id}/{t.name}/{t.language}".encode(), usedforsecurity=False
                            ).hexdigest()[:12],
                            16,
                        )
                    ),
                    "components": [{"type": "BODY", "text": t.body_text}],
                }
                for t in page
            ],
            "paging": {
                "cursors": {
                    "before": base64.urlsafe_b64encode(str(start).encode()).decode(),
                    "after": base64.urlsafe_b64encode(str(start + len(page)).encode()).decode(),
                }
            },
        }
        if start + len(page) < len(items):
            nxt = request.url.include_query_params(
                after=body["paging"]["cursors"]["after"], limit=str(limit)
            )
            body["paging"]["next"] = str(nxt)
        entry["status"] = 200
        return JSONResponse(body)

    # --- webhooks the simulator posts ---------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_webhook(self, number: NumberSpec, payload: dict[str, Any]) -> int:
        if not number.webhook_url:
            raise ValueError("this number has no webhook_url")
        raw = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if number.app_secret:
            headers["X-Hub-Signature-256"] = _sign(number.app_secret, raw)
        if self._webhook_client is None:
            self._webhook_client = httpx.AsyncClient(timeout=10, limits=_WEBHOOK_LIMITS)
        response = await self._webhook_client.post(number.webhook_url, content=raw, headers=headers)
        return response.status_code

    @staticmethod
    def _envelope(
        phone_number_id: str, number: NumberSpec, value: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": number.waba_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": number.display_phone_number,
                                    "phone_number_id": phone_number_id,
                                },
                                **value,
                            },
                        }
                    ],
                }
            ],
        }

    async def _post_statuses(
        self,
        phone_number_id: str,
        number: NumberSpec,
        wamid: str,
        to: str,
        callback_data: str | None,
    ) -> None:
        for status in ("sent", "delivered"):
            await asyncio.sleep(0.05)
            report: dict[str, Any] = {
                "id": wamid,
                "status": status,
                "timestamp": str(int(time.time())),
                "recipient_id": to,
            }
            if callback_data is not None:
                report["biz_opaque_callback_data"] = callback_data
            payload = self._envelope(phone_number_id, number, {"statuses": [report]})
            # Each report is delivered (and retried) on its own, as Meta does: a
            # "delivered" can overtake a "sent" that is being retried.
            self._spawn(self._post_until_taken(number, payload))

    async def _post_until_taken(self, number: NumberSpec, payload: dict[str, Any]) -> None:
        """Post a webhook as Meta does: a failure or an answer other than 200 is posted
        again, later and later (Meta keeps on for about a day; the simulator for about a
        minute)."""
        for wait_s in (*_WEBHOOK_RETRY_S, None):
            try:
                status: int | str = await self._post_webhook(number, payload)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            if status == 200:
                return
            if wait_s is None:
                log.warning("status webhook given up: %s", status)
                return
            log.warning("status webhook failed (%s): again in %g s", status, wait_s)
            await asyncio.sleep(wait_s)

    async def inbound_message(self, spec: InboundSpec) -> dict[str, Any]:
        number = self.numbers.get(spec.phone_number_id)
        if number is None:
            return {"error": f"unknown phone number id {spec.phone_number_id}"}
        sender = spec.from_.removeprefix("+")
        now = int(time.time())
        self.inbound[(spec.phone_number_id, sender)] = float(now)
        value = {
            "contacts": [{"profile": {"name": spec.name}, "wa_id": sender}],
            "messages": [
                {
                    "from": sender,
                    "id": _wamid(),
                    "timestamp": str(now),
                    "type": "text",
                    "text": {"body": spec.text},
                }
            ],
        }
        payload = self._envelope(spec.phone_number_id, number, value)
        webhook_status = None
        if number.webhook_url:
            webhook_status = await self._post_webhook(number, payload)
        return {"webhook_status": webhook_status, "payload": payload}

    # --- routes -------------------------------------------------------------

    def _build_router(self) -> APIRouter:
        router = APIRouter()

        @router.put("/_sim/whatsapp/numbers/{phone_number_id}")
        async def put_number(phone_number_id: str, spec: NumberSpec) -> dict[str, Any]:
            self.numbers[phone_number_id] = spec
            return {"phone_number_id": phone_number_id, "waba_id": spec.waba_id}

        @router.get("/_sim/whatsapp/numbers/{phone_number_id}")
        async def get_number(phone_number_id: str) -> JSONResponse:
            number = self.numbers.get(phone_number_id)
            if number is None:
                return JSONResponse({"error": "unknown phone number id"}, 404)
            return JSONResponse(number.model_dump())

        @router.post("/_sim/whatsapp/templates")
        async def add_templates(specs: list[TemplateSpec]) -> dict[str, Any]:
            for spec in specs:
                self.templates.setdefault(spec.waba_id, {})[(spec.name, spec.language)] = spec
            return {"templates": sum(len(t) for t in self.templates.values())}

        @router.post("/_sim/whatsapp/inbound")
        async def inbound(spec: InboundSpec) -> JSONResponse:
            result = await self.inbound_message(spec)
            return JSONResponse(result, 404 if "error" in result else 200)

        @router.post("/{version}/{phone_number_id}/messages")
        async def messages(version: str, phone_number_id: str, request: Request) -> Response:
            return await self.send(version, phone_number_id, request)

        @router.get("/{version}/{waba_id}/message_templates")
        async def templates(version: str, waba_id: str, request: Request) -> Response:
            return await self.list_templates(version, waba_id, request)

        return router
