"""The check every WhatsApp template send goes through before it is stored: shared by
the send route, campaigns and automations."""

from __future__ import annotations

from typing import Literal

from redis.asyncio import Redis

from worker.codes import Code
from worker.errors import Rejected
from worker.models import Template, locales
from worker.store import templates


async def check_template_any_language(
    redis: Redis, account: str, name: str, language: str | None, parameter_count: int
) -> None:
    """``check_template`` in ``language``; without one (each contact's locale will pick:
    worker/models/locales.py), in the language a contact without a locale would get."""
    if language is None:
        synced = await templates.approved_languages(redis, account, name)
        language = locales.pick(None, synced) or min(synced, default="en")
    await check_template(redis, account, name, language, parameter_count)


async def check_template(
    redis: Redis,
    account: str,
    name: str,
    language: str,
    parameter_count: int,
    stored: bytes | str | Literal[False] | None = False,
) -> None:
    """Refused (422) unless the template exists in this language, is approved, and takes
    as many parameters as given (a campaign's are checked the same way before it is
    stored). ``stored``: the template's raw record when the caller already read it."""
    if stored is False:
        template = await templates.get_template(redis, account, name, language)
    else:
        template = Template.model_validate_json(stored) if stored else None
    if template is None:
        languages = sorted(
            t.language for t in await templates.list_templates(redis, account) if t.name == name
        )
        hint = (
            f"; it exists in: {', '.join(languages)}"
            if languages
            else "; run `dispatch templates sync` after creating it in WhatsApp Manager"
        )
        raise Rejected(
            Code.TEMPLATE_NOT_FOUND,
            f"Template '{name}' (language '{language}') not found{hint}",
        )
    if template.status.upper() != "APPROVED":
        raise Rejected(
            Code.TEMPLATE_NOT_APPROVED,
            f"Template '{template.name}' ({template.language}) is {template.status}, not APPROVED",
        )
    if parameter_count != template.body_parameters:
        raise Rejected(
            Code.TEMPLATE_PARAMETER_MISMATCH,
            f"Template '{template.name}' ({template.language}) expects "
            f"{template.body_parameters} parameter(s), got {parameter_count}",
            expected_parameters=template.body_parameters,
        )
