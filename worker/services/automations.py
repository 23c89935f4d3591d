"""The automations API's checks that need the account's data (its templates)."""

from __future__ import annotations

from redis.asyncio import Redis

from worker.api.errors import ApiError
from worker.api.routes.whatsapp import check_template
from worker.config import Settings
from worker.models.automations import AutomationCreate, SendWhatsApp, Webhook
from worker.providers.outbound import OutboundError, check_url, networks


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
                raise ApiError(
                    400,
                    f"steps[{i}].url: {exc.reason}",
                    "url_not_allowed",
                    field=f"steps[{i}].url",
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
                await check_template(redis, account, name, step.language, len(parameters))
            except ApiError as exc:
                raise ApiError(
                    exc.status_code,
                    f"steps[{i}]: {exc.error}",
                    exc.code,
                    step=i,
                    **exc.extra,
                ) from None
