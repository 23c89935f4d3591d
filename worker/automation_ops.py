"""What the automations API and the triggers do, apart from HTTP: the checks that need the
account's data, and enrolment when something happens to a contact."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from worker.api.errors import ApiError
from worker.api.routes.whatsapp import check_template
from worker.automation_models import AutomationCreate, SendWhatsApp
from worker.ids import new_id
from worker.store import automations

log = logging.getLogger(__name__)


async def check_steps(redis: Redis, account: str, body: AutomationCreate) -> None:
    """422 naming the step when a send step's template is missing, not approved, or takes
    another number of parameters."""
    for i, step in enumerate(body.steps):
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


def _matches(trigger: dict[str, Any], facts: dict[str, str]) -> bool:
    return all(facts.get(name) == value for name, value in trigger.get("filters", {}).items())


async def fire(
    redis: Redis,
    account: str,
    trigger: str,
    contact_id: str,
    *,
    facts: dict[str, str] | None = None,
    event: dict[str, Any] | None = None,
) -> list[str]:
    """Enrol the contact in every active automation with this trigger whose filters match
    ``facts`` (``{"tag": …}``, ``{"event": …}``); returns the new runs' ids."""
    started = []
    for automation in await automations.active_for(redis, account, trigger):
        if not _matches(automation.trigger, facts or {}):
            continue
        run_id = new_id("run")
        outcome = await automations.enroll(redis, account, automation.id, contact_id, run_id, event)
        if outcome == "ok":
            started.append(run_id)
            log.info(
                "automation %s: contact enrolled (%s), run %s",
                automation.id,
                trigger,
                run_id,
                extra={"event": "automation.enrolled", "account": account},
            )
    return started


async def contact_changed(
    redis: Redis, account: str, contact_id: str, *, created: bool, added_tags: list[str]
) -> None:
    """After a contact was created or tagged (API, CLI): the matching automations."""
    if created:
        await fire(redis, account, "contact.created", contact_id)
    for tag in added_tags:
        await fire(redis, account, "contact.tag_added", contact_id, facts={"tag": tag})
