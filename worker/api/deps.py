"""Request dependencies: the Redis client, the settings, and the caller's API key."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from redis.asyncio import Redis

from worker.codes import Code
from worker.config import Settings
from worker.errors import Rejected
from worker.models import ApiKeyRecord, Scope
from worker.observe import metrics
from worker.store import accounts, keys, messages
from worker.store.client import get_str
from worker.store.messages import Message


# Dependencies are async: FastAPI runs a plain `def` one on a worker thread, a thread
# hand-off per request for a dictionary lookup.
async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


log = logging.getLogger(__name__)

RedisDep = Annotated[Redis, Depends(get_redis)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def authenticate(
    redis: RedisDep, authorization: Annotated[str | None, Header()] = None
) -> ApiKeyRecord:
    return _usable(await accounts.resolve_key(redis, _secret(authorization)))


def _secret(authorization: str | None) -> str:
    if not authorization:
        raise Rejected(Code.UNAUTHORIZED, "Missing API key: send 'Authorization: Bearer msk_…'")
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret.startswith("msk_"):
        raise Rejected(Code.UNAUTHORIZED, "Malformed Authorization header: expected 'Bearer msk_…'")
    return secret


def _usable(record: ApiKeyRecord | None) -> ApiKeyRecord:
    if record is None:
        raise Rejected(Code.UNAUTHORIZED, "Invalid API key")
    if record.revoked_at is not None:
        raise Rejected(Code.UNAUTHORIZED, "This API key has been revoked")
    return record


def require(scope: Scope) -> Callable[[ApiKeyRecord], Awaitable[ApiKeyRecord]]:
    async def check(key: Annotated[ApiKeyRecord, Depends(authenticate)]) -> ApiKeyRecord:
        if not key.allows(scope):
            raise Rejected(Code.INSUFFICIENT_SCOPE, f"This API key lacks the '{scope.value}' scope")
        return key

    return check


SendKey = Annotated[ApiKeyRecord, Depends(require(Scope.SEND))]
CampaignsKey = Annotated[ApiKeyRecord, Depends(require(Scope.CAMPAIGNS))]


# Send endpoints keep the records of keys they have seen, for what never changes about a
# key (its account, its scopes). Whether it still exists and is not revoked is read on
# every request all the same: in the round trip of the send's own checks, or, for an
# idempotent replay (which runs none), by ``Sender.check_key``. The other routes read the
# key again (``authenticate``), so a revocation holds from the next request in every
# API process.
_seen: dict[str, ApiKeyRecord] = {}
_SEEN_MAX = 10_000


@dataclass(frozen=True)
class Sender:
    """What a send endpoint needs, from one dependency (each FastAPI dependency costs
    tens of microseconds, a real share of a send's budget)."""

    key: ApiKeyRecord
    key_hash: str
    redis: Redis
    settings: Settings
    # False: the key came from memory; the send script checks it is still valid, in the
    # send's one round trip (whatsapp_send.lua, push_send.lua).
    confirmed: bool
    prefer: str | None
    idempotency_key: str | None

    @property
    def account(self) -> str:
        return self.key.account

    async def check_key(self) -> None:
        """401 if a remembered key was revoked (or removed) since: for an answer that runs
        no send script to check it (an idempotent replay)."""
        if self.confirmed:
            return
        raw = await get_str(self.redis, keys.api_key(self.key_hash))
        try:
            _usable(ApiKeyRecord.model_validate_json(raw) if raw else None)
        except Rejected:
            _seen.pop(self.key_hash, None)  # its next request is refused by the guard
            raise


def hash_secret(authorization: str | None) -> str:
    """The key's hash from an ``Authorization`` header; 401 if it is missing or malformed."""
    return accounts.hash_key(_secret(authorization))


async def known_key(redis: Redis, key_hash: str) -> tuple[ApiKeyRecord, bool]:
    """The key's record and whether it was just read from Redis (True) or remembered from
    an earlier request (False: the caller re-checks revocation where it matters); 401 if
    it does not exist or is revoked."""
    key = _seen.get(key_hash)
    if key is not None:
        return key, False
    raw = await get_str(redis, keys.api_key(key_hash))
    key = _usable(ApiKeyRecord.model_validate_json(raw) if raw else None)
    if len(_seen) >= _SEEN_MAX:
        _seen.clear()
    _seen[key_hash] = key
    return key, True


# Where the API's guard leaves the key it checked: (hash, record, just read from Redis).
SCOPE_KEY = "dispatch.api_key"


async def sender(request: Request) -> Sender:
    # Headers read here, in one pass over the raw list, rather than declared one by one:
    # FastAPI's per-parameter work (and each lookup in Starlette's Headers, a scan of its
    # own) is a real share of a send's cost. The routes document them in their OpenAPI entry.
    authorization = prefer = idempotency_key = None
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"prefer":
            prefer = value.decode("latin-1")
        elif name == b"idempotency-key":
            idempotency_key = value.decode("latin-1")
    redis: Redis = request.app.state.redis
    checked = request.scope.get("state", {}).get(SCOPE_KEY)
    if checked is not None:
        key_hash, key, confirmed = checked
    else:
        key_hash = hash_secret(authorization)
        key, confirmed = await known_key(redis, key_hash)
    if not key.allows(Scope.SEND):
        raise Rejected(
            Code.INSUFFICIENT_SCOPE, f"This API key lacks the '{Scope.SEND.value}' scope"
        )
    return Sender(
        key,
        key_hash,
        redis,
        request.app.state.settings,
        confirmed,
        prefer,
        idempotency_key,
    )


SenderDep = Annotated[Sender, Depends(sender)]

# The headers `sender` reads, as the OpenAPI document shows them.
SEND_HEADERS: dict[str, Any] = {
    "parameters": [
        {
            "name": "Authorization",
            "in": "header",
            "required": True,
            "schema": {"type": "string", "example": "Bearer msk_…"},
        },
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "enum": ["respond-async"]},
            "description": "respond-async: answer 202 at once instead of waiting for the "
            "provider's answer",
        },
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "The same key and body within 24 h gets the first answer and "
            "sends nothing again",
        },
    ]
}
ContactsKey = Annotated[ApiKeyRecord, Depends(require(Scope.CONTACTS))]
AutomationsKey = Annotated[ApiKeyRecord, Depends(require(Scope.AUTOMATIONS))]
AdminKey = Annotated[ApiKeyRecord, Depends(require(Scope.ADMIN))]


def note_accepted(message: Message) -> None:
    """A send the API stored and queued: counted, and logged as ``send.accepted``."""
    channel = message.channel.value
    metrics.API_ACCEPTED.labels(channel).inc()
    log.info(
        "%s send %s accepted",
        channel,
        message.id,
        extra={
            "event": "send.accepted",
            "message_id": message.id,
            "account": message.account,
            "channel": channel,
        },
    )


async def wait_for_outcome(
    redis: Redis, settings: Settings, message: Message, prefer: str | None
) -> Message:
    """Wait up to the send budget for the worker's outcome, unless the client asked
    ``Prefer: respond-async``; returns the message as it then stands."""
    if (prefer and "respond-async" in prefer.lower()) or message.deferred_until is not None:
        return message  # (put off by quiet hours: no outcome within a request's time)
    await messages.wait_final(redis, message.account, message.id, settings.send_wait_s)
    return await messages.load(redis, message.account, message.id) or message
