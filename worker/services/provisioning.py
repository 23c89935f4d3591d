"""Operator actions shared by the CLI and the demo: channel setup and template sync."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from redis.asyncio import Redis

from worker.config import FcmSenderName, Settings
from worker.models import ApnsConfig, FcmConfig, Template, WhatsAppConfig
from worker.providers.whatsapp import WhatsAppClient
from worker.store import accounts, channels, templates
from worker.store.client import create_redis


@asynccontextmanager
async def redis_session(settings: Settings) -> AsyncIterator[Redis]:
    client = create_redis(settings, max_connections=8)
    try:
        await client.ping()
        yield client
    finally:
        await client.aclose()


def provider_http(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.provider_timeout_s, connect=settings.provider_connect_timeout_s
        )
    )


async def configure_whatsapp(
    redis: Redis,
    settings: Settings,
    account_id: str,
    *,
    phone_number_id: str,
    waba_id: str,
    access_token: str,
    app_secret: str | None = None,
    verify_token: str | None = None,
    base_url: str | None = None,
    api_version: str | None = None,
    rate_per_s: float | None = None,
) -> WhatsAppConfig:
    await accounts.require_account(redis, account_id)
    config = WhatsAppConfig.model_validate(
        {
            "phone_number_id": phone_number_id,
            "waba_id": waba_id,
            "access_token": access_token,
            "app_secret": app_secret,
            # Meta's webhook handshake echoes a token we choose; make one if none is given.
            "verify_token": verify_token or secrets.token_urlsafe(24),
            "base_url": base_url or settings.whatsapp_base_url,
            "api_version": api_version or settings.whatsapp_api_version,
            "rate_per_s": rate_per_s,
        }
    )
    await channels.save_whatsapp(redis, account_id, config)
    return config


class ChannelNotConfiguredError(Exception):
    pass


async def sync_templates(redis: Redis, settings: Settings, account_id: str) -> list[Template]:
    """Pull every template of the account's WABA (all pages) and replace the stored set."""
    config = await channels.load_whatsapp(redis, account_id)
    if config is None:
        raise ChannelNotConfiguredError(account_id)
    async with provider_http(settings) as http:
        fetched = [t async for t in WhatsAppClient(http).templates(config)]
    await templates.replace_templates(redis, account_id, fetched)
    return fetched


async def configure_fcm(
    redis: Redis,
    account_id: str,
    service_account_json: str,
    *,
    endpoint: str | None = None,
    ca_file: str | None = None,
    rate_per_s: float | None = None,
    sender: FcmSenderName | None = None,
) -> FcmConfig:
    """Store an FCM project's service account; the project id is read from it.
    ``sender``: this account's FCM sender (None: the workers' setting)."""
    await accounts.require_account(redis, account_id)
    try:
        info = json.loads(service_account_json)
    except ValueError:
        raise ValueError("the service account file is not JSON") from None
    missing = [
        k
        for k in ("project_id", "private_key", "client_email", "token_uri")
        if not isinstance(info, dict) or not info.get(k)
    ]
    if missing or info.get("type") != "service_account":
        raise ValueError(
            "not a Google service-account key file (expected type 'service_account' with "
            f"project_id, private_key, client_email, token_uri){'; missing: ' if missing else ''}"
            f"{', '.join(missing)}"
        )
    config = FcmConfig.model_validate(
        {
            "project_id": info["project_id"],
            "service_account": service_account_json,
            "endpoint": endpoint,
            "ca_file": ca_file,
            "rate_per_s": rate_per_s,
            "sender": sender,
        }
    )
    await channels.save_push(redis, account_id, config)
    return config


async def configure_apns(
    redis: Redis,
    account_id: str,
    *,
    key_pem: str,
    key_id: str,
    team_id: str,
    topic: str,
    sandbox: bool = False,
    endpoint: str | None = None,
    ca_file: str | None = None,
    rate_per_s: float | None = None,
) -> ApnsConfig:
    """Store token-based APNs credentials (an AuthKey_XXXX.p8) for one app topic."""
    await accounts.require_account(redis, account_id)
    if "BEGIN PRIVATE KEY" not in key_pem:
        raise ValueError("the APNs key file is not a PEM private key (AuthKey_XXXXXXXXXX.p8)")
    config = ApnsConfig.model_validate(
        {
            "key": key_pem,
            "key_id": key_id,
            "team_id": team_id,
            "topic": topic,
            "sandbox": sandbox,
            "endpoint": endpoint,
            "ca_file": ca_file,
            "rate_per_s": rate_per_s,
        }
    )
    await channels.save_push(redis, account_id, config)
    return config
