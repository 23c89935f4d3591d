"""Request dependencies: the Redis client, the settings, and the caller's API key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, Request
from redis.asyncio import Redis

from worker.api.errors import ApiError
from worker.config import Settings
from worker.models import ApiKeyRecord, Scope
from worker.store import accounts, messages
from worker.store.messages import Message


def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


RedisDep = Annotated[Redis, Depends(get_redis)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def authenticate(
    redis: RedisDep, authorization: Annotated[str | None, Header()] = None
) -> ApiKeyRecord:
    if not authorization:
        raise ApiError(
            401,
            "Missing API key: send 'Authorization: Bearer msk_…'",
            "unauthorized",
        )
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret.startswith("msk_"):
        raise ApiError(
            401, "Malformed Authorization header: expected 'Bearer msk_…'", "unauthorized"
        )
    record = await accounts.resolve_key(redis, secret)
    if record is None:
        raise ApiError(401, "Invalid API key", "unauthorized")
    if record.revoked_at is not None:
        raise ApiError(401, "This API key has been revoked", "unauthorized")
    return record


def require(scope: Scope) -> Callable[[ApiKeyRecord], Awaitable[ApiKeyRecord]]:
    async def check(key: Annotated[ApiKeyRecord, Depends(authenticate)]) -> ApiKeyRecord:
        if not key.allows(scope):
            raise ApiError(
                403, f"This API key lacks the '{scope.value}' scope", "insufficient_scope"
            )
        return key

    return check


SendKey = Annotated[ApiKeyRecord, Depends(require(Scope.SEND))]
ContactsKey = Annotated[ApiKeyRecord, Depends(require(Scope.CONTACTS))]
AdminKey = Annotated[ApiKeyRecord, Depends(require(Scope.ADMIN))]


async def wait_for_outcome(
    redis: Redis, settings: Settings, message: Message, prefer: str | None
) -> Message:
    """Wait up to the send budget for the worker's outcome, unless the client asked
    ``Prefer: respond-async``; returns the message as it then stands."""
    if prefer and "respond-async" in prefer.lower():
        return message
    await messages.wait_final(redis, message.account, message.id, settings.send_wait_s)
    return await messages.load(redis, message.account, message.id) or message
