"""``/webhooks/whatsapp``: Meta's verification handshake and signed event callbacks.

Inbound customer messages open the 24-hour window for free-form sends; status
events record what happened to a message after the Graph API accepted it. A
payload whose ``X-Hub-Signature-256`` does not verify with the app secret of
every account it mentions is rejected whole, and nothing of it is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from redis.asyncio import Redis

from worker.api.deps import RedisDep, SettingsDep
from worker.codes import Code
from worker.errors import Rejected
from worker.ids import CALLBACK_ID_RE, WAMID_RE
from worker.masking import mask_phone
from worker.store import channels, conversations, messages, preferences

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
# Where Meta posts the callbacks (and makes its verify GET).
CALLBACK = "/whatsapp"
CALLBACK_PATH = router.prefix + CALLBACK
log = logging.getLogger(__name__)
_SIGNATURE_RE = re.compile(r"^sha256=[0-9a-f]{64}$")
# Numbers one callback may name: Meta sends a WABA's changes together (a few numbers); a
# payload naming more is refused before any of them is looked up.
MAX_NUMBERS_PER_CALLBACK = 20


def signature(app_secret: str, raw_body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def _changes(payload: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(payload, dict):
        return
    for entry in payload.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or []:
            value = change.get("value") if isinstance(change, dict) else None
            if isinstance(value, dict):
                yield value


def _phone_number_id(value: dict[str, Any]) -> str | None:
    metadata = value.get("metadata")
    if isinstance(metadata, dict) and metadata.get("phone_number_id"):
        return str(metadata["phone_number_id"])
    return None


@router.get(CALLBACK, response_model=None)
async def verify(
    redis: RedisDep,
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> PlainTextResponse:
    if mode != "subscribe" or not token or challenge is None:
        raise Rejected(
            Code.INVALID_REQUEST, "Expected hub.mode=subscribe, hub.verify_token and hub.challenge"
        )
    if await channels.account_for_verify_token(redis, token) is None:
        raise Rejected(Code.FORBIDDEN, "Unknown verify token")
    return PlainTextResponse(challenge)


@router.post(CALLBACK)
async def receive(request: Request, redis: RedisDep, settings: SettingsDep) -> JSONResponse:
    """Verify the callback against every account it names, then record its inbound
    messages (they open the 24-hour window) and its status reports."""
    presented = _presented_signature(request)
    raw = await request.body()
    try:
        payload = json.loads(raw)
    except ValueError:
        raise Rejected(Code.INVALID_JSON, "Request body is not valid JSON") from None

    values = list(_changes(payload))
    owners = await _owners(redis, values)
    await _verify_signatures(redis, owners, raw, presented)

    inbound = statuses = 0
    for value in values:
        account = owners.get(_phone_number_id(value) or "")
        if account is None:
            continue  # a number no account here owns: nothing of it is stored
        inbound += await _record_inbound(redis, account, value, settings.whatsapp_window_s)
        statuses += await _record_statuses(redis, account, value, settings.whatsapp_max_age_s)
    return JSONResponse({"success": True, "messages": inbound, "statuses": statuses})


async def serve_callback(request: Request) -> JSONResponse:
    """``receive`` for ``SendFastPath``, which serves it without FastAPI's layers: they
    cost about a quarter of the API's CPU per status report (docs/performance.md)."""
    return await receive(request, request.app.state.redis, request.app.state.settings)


def _presented_signature(request: Request) -> str:
    """The signature header, checked for form first: nothing is read, parsed or looked up
    for a request that could not be Meta's (the body itself is capped by the API's guard)."""
    presented = request.headers.get("x-hub-signature-256")
    if not presented:
        raise Rejected(Code.INVALID_SIGNATURE, "Missing X-Hub-Signature-256 header")
    if not _SIGNATURE_RE.fullmatch(presented):
        raise Rejected(Code.INVALID_SIGNATURE, "Malformed X-Hub-Signature-256 header")
    return presented


async def _owners(redis: Redis, values: list[dict[str, Any]]) -> dict[str, str]:
    """The account owning each phone number the callback names (numbers nobody here owns
    are left out); refused before any lookup when it names too many."""
    numbers = {n for n in (_phone_number_id(v) for v in values) if n}
    if len(numbers) > MAX_NUMBERS_PER_CALLBACK:
        raise Rejected(Code.INVALID_REQUEST, "Too many phone numbers in one callback")
    owners: dict[str, str] = {}
    for phone_number_id in numbers:  # one lookup per distinct number
        account = await channels.account_for_phone_number(redis, phone_number_id)
        if account:
            owners[phone_number_id] = account
    return owners


async def _verify_signatures(
    redis: Redis, owners: dict[str, str], raw: bytes, presented: str
) -> None:
    """The signature must verify with the app secret of every account the callback names:
    one account's secret must not let it write into another's messages."""
    for account in set(owners.values()):
        config = await channels.load_whatsapp(redis, account)
        if config is None or config.app_secret is None:
            raise Rejected(
                Code.INVALID_SIGNATURE,
                "Cannot verify the signature: no app secret configured for this number",
            )
        expected = signature(config.app_secret.get_secret_value(), raw)
        if not hmac.compare_digest(expected, presented):
            log.warning("whatsapp webhook with a bad signature rejected (account %s)", account)
            raise Rejected(Code.INVALID_SIGNATURE, "Invalid webhook signature")


async def _record_inbound(redis: Redis, account: str, value: dict[str, Any], window_s: int) -> int:
    """Open the free-form window for each customer who wrote, and record an opt-out or
    opt-in keyword (STOP, START…) a text is; how many opened a window."""
    inbound = 0
    for msg in value.get("messages") or []:
        sender = str(msg.get("from") or "")
        if not sender.isdigit() or len(sender) > 15:
            continue
        received_at = float(msg.get("timestamp") or 0)
        if await conversations.open_window(redis, account, "+" + sender, received_at, window_s):
            inbound += 1
            log.info("whatsapp inbound from %s opens the window", mask_phone("+" + sender))
        text = msg.get("text")
        body = text.get("body") if isinstance(text, dict) else None
        if msg.get("type") == "text" and isinstance(body, str) and len(body) <= 64:
            kind = await preferences.apply_keyword(
                redis, account, "+" + sender, body, received_at or time.time()
            )
            if kind is not None:
                log.info("whatsapp inbound from %s: %s", mask_phone("+" + sender), kind)
    return inbound


async def _record_statuses(redis: Redis, account: str, value: dict[str, Any], keep_s: float) -> int:
    """Apply each status report to the account's message it is about; how many changed
    a message. A report naming a message whose wamid is unknown is kept ``keep_s``."""
    statuses = 0
    reports = [s for s in value.get("statuses") or [] if isinstance(s, dict)]
    if reports:
        await messages.note_status_reports(redis, account)
    for status in reports:
        wamid = str(status.get("id") or "")
        errors = status.get("errors") or []
        error = ""
        if errors and isinstance(errors[0], dict):
            error = f"{errors[0].get('code', '')} {errors[0].get('title', '')}".strip()
        if not wamid:
            continue
        # The provider can report "delivered" before the worker has written down the
        # wamid it answered: such a report is held until it does.
        found = await messages.find_or_hold_status(
            redis,
            wamid,
            account,
            str(status.get("status") or ""),
            float(status.get("timestamp") or 0),
            error,
        )
        if found is None:
            # Or the answer never came (a timeout): the report names the message, whose
            # next attempt records this wamid instead of sending it again.
            named = status.get("biz_opaque_callback_data")
            if (
                isinstance(named, str)
                and CALLBACK_ID_RE.fullmatch(named)
                and WAMID_RE.fullmatch(wamid)
            ):
                await messages.confirm_unanswered(redis, account, named, wamid, keep_s)
            continue
        if found[0] != account:
            continue
        if await messages.apply_delivery_status(
            redis,
            account,
            found[1],
            str(status.get("status") or ""),
            float(status.get("timestamp") or 0),
            error,
        ):
            statuses += 1
    return statuses
