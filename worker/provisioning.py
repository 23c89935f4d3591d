"""Operator actions shared by the CLI and the demo: channel setup and template sync."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from redis.asyncio import Redis

from worker.config import Settings
from worker.models import Template, WhatsAppConfig
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
