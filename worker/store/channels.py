"""Per-account channel credentials, and the indexes that route webhooks to an account."""

from __future__ import annotations

import json
import time

from pydantic import SecretStr
from redis.asyncio import Redis

from worker.models import ApnsConfig, FcmConfig, WhatsAppConfig
from worker.store import keys, secrets
from worker.store.accounts import hash_key
from worker.store.client import fields, get_str, hgetall_str

WHATSAPP = "whatsapp"
# The WhatsApp channel's fields stored encrypted (worker.store.secrets).
_WHATSAPP_SECRETS = ("access_token", "app_secret", "verify_token")


async def save_whatsapp(redis: Redis, account_id: str, config: WhatsAppConfig) -> None:
    previous = await load_whatsapp(redis, account_id)
    values = {
        "phone_number_id": config.phone_number_id,
        "waba_id": config.waba_id,
        "access_token": config.access_token.get_secret_value(),
        "base_url": config.base_url,
        "api_version": config.api_version,
        "app_secret": config.app_secret.get_secret_value() if config.app_secret else "",
        "verify_token": config.verify_token.get_secret_value() if config.verify_token else "",
        "rate_per_s": repr(config.rate_per_s) if config.rate_per_s else "",
    }
    box = secrets.box()
    for name in _WHATSAPP_SECRETS:
        if values[name]:
            values[name] = box.seal(values[name])
    async with redis.pipeline(transaction=True) as pipe:
        if previous is not None:
            pipe.delete(keys.whatsapp_phone_index(previous.phone_number_id))
            if previous.verify_token:
                pipe.delete(
                    keys.whatsapp_verify_index(hash_key(previous.verify_token.get_secret_value()))
                )
        pipe.delete(keys.channel(account_id, WHATSAPP))
        pipe.delete(keys.channel_suspended(account_id, WHATSAPP))
        pipe.hset(keys.channel(account_id, WHATSAPP), mapping=fields(values))
        pipe.set(keys.whatsapp_phone_index(config.phone_number_id), account_id)
        if config.verify_token:
            pipe.set(
                keys.whatsapp_verify_index(hash_key(config.verify_token.get_secret_value())),
                account_id,
            )
        await pipe.execute()


async def load_whatsapp(redis: Redis, account_id: str) -> WhatsAppConfig | None:
    raw = await hgetall_str(redis, keys.channel(account_id, WHATSAPP))
    if not raw:
        return None
    # Empty strings stand for "not set" in the hash.
    box = secrets.box()
    return WhatsAppConfig.model_validate(
        {k: box.open(v) if k in _WHATSAPP_SECRETS else v for k, v in raw.items() if v}
    )


async def whatsapp_configured(redis: Redis, account_id: str) -> bool:
    return bool(await redis.exists(keys.channel(account_id, WHATSAPP)))


async def account_for_phone_number(redis: Redis, phone_number_id: str) -> str | None:
    return await get_str(redis, keys.whatsapp_phone_index(phone_number_id))


async def account_for_verify_token(redis: Redis, token: str) -> str | None:
    return await get_str(redis, keys.whatsapp_verify_index(hash_key(token)))


FCM = "fcm"
APNS = "apns"
PushConfig = FcmConfig | ApnsConfig
_PUSH_MODELS: dict[str, type[FcmConfig] | type[ApnsConfig]] = {FCM: FcmConfig, APNS: ApnsConfig}


def _sealed(config: PushConfig) -> str:
    """The model as JSON, its secret fields (a private key) encrypted."""
    box = secrets.box()
    data = config.model_dump()
    for name, value in data.items():
        if isinstance(value, SecretStr):
            data[name] = box.seal(value.get_secret_value())
    return json.dumps(data)


def _opened(model: type[FcmConfig] | type[ApnsConfig], raw: str) -> PushConfig:
    box = secrets.box()
    data = json.loads(raw)
    for name, field in model.model_fields.items():
        if field.annotation is SecretStr and isinstance(data.get(name), str):
            data[name] = box.open(data[name])
    return model.model_validate(data)


async def rotate(redis: Redis, account_id: str) -> int:
    """Every credential of the account encrypted again with the current key (plaintext
    ones too); returns how many channels were rewritten."""
    box = secrets.box()
    count = 0
    raw = await hgetall_str(redis, keys.channel(account_id, WHATSAPP))
    if raw:
        rotated = {n: box.rotate(raw[n]) for n in _WHATSAPP_SECRETS if raw.get(n)}
        await redis.hset(keys.channel(account_id, WHATSAPP), mapping=fields(rotated))
        count += 1
    for name, model in _PUSH_MODELS.items():
        raw = await hgetall_str(redis, keys.channel(account_id, name))
        if raw:
            config = _opened(model, raw["config"])
            await redis.hset(keys.channel(account_id, name), "config", _sealed(config))
            count += 1
    return count


async def save_push(redis: Redis, account_id: str, config: PushConfig) -> None:
    """Store an FCM or APNs configuration; ``version`` lets workers rebuild their clients."""
    name = FCM if isinstance(config, FcmConfig) else APNS
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.channel(account_id, name),
            mapping=fields({"config": _sealed(config), "version": repr(time.time())}),
        )
        pipe.delete(keys.channel_suspended(account_id, name))
        await pipe.execute()


async def load_push(redis: Redis, account_id: str) -> dict[str, tuple[PushConfig, str]]:
    """The account's configured push platforms: platform → (config, version)."""
    async with redis.pipeline(transaction=False) as pipe:
        for name in _PUSH_MODELS:
            pipe.hgetall(keys.channel(account_id, name))
        raws: list[dict[str, str]] = await pipe.execute()
    out: dict[str, tuple[PushConfig, str]] = {}
    for (name, model), raw in zip(_PUSH_MODELS.items(), raws, strict=True):
        if raw:
            out[name] = (_opened(model, raw["config"]), raw["version"])
    return out


async def push_platforms(redis: Redis, account_id: str) -> set[str]:
    async with redis.pipeline(transaction=False) as pipe:
        for name in _PUSH_MODELS:
            pipe.exists(keys.channel(account_id, name))
        found = await pipe.execute()
    return {name for name, exists in zip(_PUSH_MODELS, found, strict=True) if exists}


async def suspend(redis: Redis, account_id: str, name: str, reason: str, ttl_s: float) -> None:
    """Stop sending on this channel for a while: the provider refused the credentials,
    and every queued send would fail the same way (and count against the account)."""
    await redis.set(keys.channel_suspended(account_id, name), reason, px=int(ttl_s * 1000))


async def suspension(redis: Redis, account_id: str, name: str) -> str | None:
    return await get_str(redis, keys.channel_suspended(account_id, name))
