"""The automations API's checks that need the account's data (its templates)."""

from __future__ import annotations

from redis.asyncio import Redis

from worker.codes import Code
from worker.config import Settings
from worker.errors import Rejected
from worker.models.automations import AutomationCreate, SendWhatsApp, Webhook
from worker.providers.outbound import OutboundError, check_url, networks
from worker.services.templates import check_template_any_language


async def check_steps(
    redis: Redis, settings: Settings, account: str, body: AutomationCreate
) -> None:
    """422 naming the step when a send step's template is missing, not approved, or takes
    another number of parameters; 400 when a webhook step's URL may not be called (a
    literal private address, credentials: what can be told before resolving it)."""
    for i, step in enumerate(body.steps):
        if isinstance(step, Webhook):
            try:
                check_url(step.url, networks(settings.outbound_allow))
            except OutboundError as exc:
                raise Rejected(
                    Code.URL_NOT_ALLOWED, f"steps[{i}].url: {exc.reason}", f"steps[{i}].url"
                ) from None
        if not isinstance(step, SendWhatsApp):
            continue
        for name, parameters in (
            (step.template_name, step.parameters),
            (step.fallback_template, step.fallback_parameters),
        ):
            if name is None:
                continue
            try:
                await check_template_any_language(
                    redis, account, name, step.language, len(parameters)
                )
            except Rejected as exc:
                raise Rejected(
                    exc.code, f"steps[{i}]: {exc.message}", exc.field, step=i, **exc.extra
                ) from None
