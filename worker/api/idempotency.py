"""``Idempotency-Key`` on the send endpoints.

The first request with a key does the work and its answer is kept for 24 hours;
a later request with the same key and the same body gets that answer (marked
``Idempotent-Replayed: true``) and sends nothing, even when the two race; the
same key with a different body is a 422. Requests rejected before anything was
stored (400/401/403/404/422) do not use up the key.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.asyncio import Redis

from worker.codes import Code
from worker.config import Settings
from worker.errors import Rejected
from worker.ids import new_id
from worker.store import idempotency, messages

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")

Send = Callable[[str], Awaitable[tuple[int, dict[str, Any]]]]


async def respond_once(
    redis: Redis,
    settings: Settings,
    account: str,
    key: str | None,
    route: str,
    body: BaseModel,
    send: Send,
    check_key: Callable[[], Awaitable[None]],
) -> JSONResponse:
    """Run ``send(message_id)`` unless this key already did; answer as the first time.
    ``check_key``: raises if the API key is no longer valid; ``send`` checks it itself,
    but an answer given without calling ``send`` must not skip that."""
    message_id = new_id("msg")
    if key is None:
        status_code, payload = await send(message_id)
        return JSONResponse(payload, status_code)
    if not _KEY_RE.fullmatch(key):
        raise Rejected(
            Code.INVALID_IDEMPOTENCY_KEY, "Idempotency-Key must be 1 to 255 printable characters"
        )
    digest = idempotency.body_hash(route, body.model_dump(mode="json"))
    first = await idempotency.claim(redis, account, key, digest, message_id)
    if first is None:
        try:
            status_code, payload = await send(message_id)
        except BaseException:
            # Nothing was stored (the failure came before the message was): free the key.
            if await messages.load(redis, account, message_id) is None:
                await idempotency.release(redis, account, key)
            raise
        await idempotency.answer(redis, account, key, status_code, payload)
        return JSONResponse(payload, status_code)
    # A revoked key gets no earlier answer: nothing else re-reads a remembered key here.
    await check_key()
    if first.body_hash != digest:
        raise Rejected(
            Code.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key was already used with a different request body",
        )
    answered = (
        first
        if first.response is not None
        else await idempotency.wait_answer(redis, account, key, settings.send_wait_s + 5)
    )
    if answered is None or answered.response is None or answered.status_code is None:
        raise Rejected(
            Code.IDEMPOTENCY_IN_PROGRESS,
            "A request with this Idempotency-Key is still in progress; retry shortly",
            id=first.message_id,
        )
    return JSONResponse(
        answered.response, answered.status_code, headers={"Idempotent-Replayed": "true"}
    )
