"""``/api/v1/settings/…`` (scope ``admin``): the account's audience settings
(docs/audience.md) — frequency caps (at most ``max`` non-transactional sends per contact
per channel per window), quiet hours, its own inbound keywords, default expiry per
category."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from worker.api.deps import AdminKey, RedisDep
from worker.models import MESSAGE_TTL_MAX_S, SendCategory, StrictBody
from worker.models.timing import QuietHours
from worker.store import account_settings, caps, preferences

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


class CapIn(StrictBody):
    max: Annotated[int, Field(strict=True, ge=1, le=1000)]
    # A minute to 30 days; windows are fixed and counted from the Unix epoch (a day: UTC).
    window_s: Annotated[int, Field(strict=True, ge=60, le=30 * 86_400)]


class CapsPut(StrictBody):
    """A channel given sets its cap, ``null`` removes it, absent leaves it. ``over_cap``:
    what happens to a send over a cap, ``skip`` (the default) or ``defer`` (to the cap's
    next window, counted there)."""

    whatsapp: CapIn | None = None
    push: CapIn | None = None
    over_cap: Literal["skip", "defer"] | None = None


def _view(found: dict[str, caps.Cap], defer: bool) -> dict[str, Any]:
    return {
        "over_cap": "defer" if defer else "skip",
        "frequency_caps": {
            channel: (
                {"max": found[channel].max, "window_s": found[channel].window_s}
                if channel in found
                else None
            )
            for channel in caps.CHANNELS
        },
    }


@router.get("/frequency_caps")
async def get_caps(key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    own = await account_settings.load(redis, key.account)
    return _view(await caps.load(redis, key.account), own.defer_over_cap)


@router.put("/frequency_caps")
async def put_caps(body: CapsPut, key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    for channel in body.model_fields_set & set(caps.CHANNELS):
        given: CapIn | None = getattr(body, channel)
        cap = None if given is None else caps.Cap(given.max, given.window_s)
        await caps.save(redis, key.account, channel, cap)
    if body.over_cap is not None:
        value = None if body.over_cap == "skip" else body.over_cap
        await account_settings.save(redis, key.account, account_settings.OVER_CAP, value)
    own = await account_settings.load(redis, key.account)
    return _view(await caps.load(redis, key.account), own.defer_over_cap)


# --- quiet hours -----------------------------------------------------------------


def _quiet_view(found: account_settings.AccountSettings) -> dict[str, Any]:
    window = found.quiet_hours
    return {"quiet_hours": None if window is None else window.model_dump()}


@router.get("/quiet_hours")
async def get_quiet_hours(key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    return _quiet_view(await account_settings.load(redis, key.account))


@router.put("/quiet_hours")
async def put_quiet_hours(body: QuietHours, key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    """Non-transactional sends that would go inside the window, in the recipient's zone,
    wait for its end (a campaign's own ``quiet_hours`` overrides it)."""
    await account_settings.save(redis, key.account, account_settings.QUIET_HOURS, body.model_dump())
    return _quiet_view(await account_settings.load(redis, key.account))


@router.delete("/quiet_hours")
async def delete_quiet_hours(key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    await account_settings.save(redis, key.account, account_settings.QUIET_HOURS, None)
    return _quiet_view(await account_settings.load(redis, key.account))


# --- the account's own inbound keywords ------------------------------------------------

Keyword = Annotated[
    str, StringConstraints(min_length=1, max_length=30, pattern=r"^[^\s](.*[^\s])?$")
]


class KeywordsPut(StrictBody):
    """Replaces both lists; STOP, UNSUBSCRIBE and START always apply."""

    opt_out: list[Keyword] = Field(default_factory=list, max_length=20)
    opt_in: list[Keyword] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _apart(self) -> KeywordsPut:
        out = {preferences.normalise_keyword(w) for w in self.opt_out}
        into = {preferences.normalise_keyword(w) for w in self.opt_in}
        both = sorted((out | preferences.OPT_OUT_KEYWORDS) & (into | preferences.OPT_IN_KEYWORDS))
        if both:
            raise PydanticCustomError(
                "invalid_request",
                "A keyword cannot both opt out and opt in: {words}",
                {"words": ", ".join(both)},
            )
        return self


def _keywords_view(found: account_settings.AccountSettings) -> dict[str, Any]:
    return {
        "keywords": {
            "opt_out": sorted(found.opt_out_keywords),
            "opt_in": sorted(found.opt_in_keywords),
            "built_in": {
                "opt_out": sorted(preferences.OPT_OUT_KEYWORDS),
                "opt_in": sorted(preferences.OPT_IN_KEYWORDS),
            },
        }
    }


@router.get("/keywords")
async def get_keywords(key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    return _keywords_view(await account_settings.load(redis, key.account))


@router.put("/keywords")
async def put_keywords(body: KeywordsPut, key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    """Inbound WhatsApp texts that opt a number out of (or back into) WhatsApp marketing,
    matched on the whole text in any case, spaces around ignored."""
    value = {
        "opt_out": sorted({preferences.normalise_keyword(w) for w in body.opt_out}),
        "opt_in": sorted({preferences.normalise_keyword(w) for w in body.opt_in}),
    }
    await account_settings.save(redis, key.account, account_settings.KEYWORDS, value)
    return _keywords_view(await account_settings.load(redis, key.account))


# --- default expiry per category -------------------------------------------------------


class ExpiryPut(StrictBody):
    """Category → seconds a send of it stays worth sending when it gives no ``ttl_s`` or
    ``expires_at`` of its own (``null`` removes a category's); replaces the whole map."""

    model_config = ConfigDict(extra="forbid")

    default_ttl_s: dict[
        SendCategory, Annotated[int, Field(strict=True, ge=1, le=MESSAGE_TTL_MAX_S)]
    ] = Field(default_factory=dict, max_length=50)


def _expiry_view(found: account_settings.AccountSettings) -> dict[str, Any]:
    return {"expiry": {"default_ttl_s": dict(sorted(found.default_ttl.items()))}}


@router.get("/expiry")
async def get_expiry(key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    return _expiry_view(await account_settings.load(redis, key.account))


@router.put("/expiry")
async def put_expiry(body: ExpiryPut, key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    await account_settings.save(
        redis, key.account, account_settings.DEFAULT_TTL, body.default_ttl_s or None
    )
    return _expiry_view(await account_settings.load(redis, key.account))
