"""Automations (scope ``automations`` or ``admin``): a trigger and steps, created inactive,
then activated; runs are durable state in Redis (``worker.delivery.automation``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from worker.api.deps import AutomationsKey, RedisDep, SettingsDep
from worker.codes import Code
from worker.errors import Rejected
from worker.ids import new_id
from worker.models.automations import (
    Activate,
    AutomationCreate,
    AutomationPatch,
    Enroll,
    TrackEvent,
)
from worker.services import automations as automation_ops
from worker.services import triggers
from worker.store import automations, contacts
from worker.store.automations import Automation, Run

router = APIRouter(prefix="/api/v1", tags=["automations"])
AutomationIdPath = Annotated[str, Path(pattern=r"^aut_[a-z0-9]{1,64}$")]
RunIdPath = Annotated[str, Path(pattern=r"^run_[a-z0-9]{1,64}$")]


async def _detail(redis: RedisDep, automation: Automation) -> dict[str, Any]:
    counts = await automations.step_counts(redis, automation.account, automation.id)
    return {
        "id": automation.id,
        "name": automation.name,
        "active": automation.active,
        "allow_reentry": automation.allow_reentry,
        "version": automation.version,
        "trigger": automation.trigger,
        "steps": [
            {**_shown(step), "stats": counts.get(i, {"waiting": 0, "done": 0, "failed": 0})}
            for i, step in enumerate(automation.steps)
        ],
        "created_at": automation.created_at,
        "updated_at": automation.updated_at,
    }


def _shown(step: dict[str, Any]) -> dict[str, Any]:
    """A webhook step's signing secret is write-only: said to be set, never shown (a PATCH
    that leaves the step out keeps it)."""
    if "secret" not in step:
        return step
    return {**{k: v for k, v in step.items() if k != "secret"}, "secret_set": True}


def _run(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "automation_id": run.automation,
        "version": run.version,
        "contact_id": run.contact,
        "status": run.status,
        "step": run.step,
        "due_at": run.due_at,
        "error": run.error,
        "event": run.event or None,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "timeline": [{"step": i, **run.steps[i]} for i in sorted(run.steps)],
    }


async def _load(redis: RedisDep, account: str, automation_id: str) -> Automation:
    automation = await automations.load(redis, account, automation_id)
    if automation is None:
        raise Rejected(Code.AUTOMATION_NOT_FOUND, f"Automation '{automation_id}' not found")
    return automation


def _ok(body: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse({"success": True, **body}, status_code)


@router.post("/automations")
async def create_automation(
    body: AutomationCreate, key: AutomationsKey, redis: RedisDep, settings: SettingsDep
) -> JSONResponse:
    """Created inactive: nothing enrols until ``PATCH …/activate`` with ``{"active": true}``."""
    await automation_ops.check_steps(redis, settings, key.account, body)
    automation_id = new_id("aut")
    await automations.create(redis, key.account, automation_id, body)
    automation = await _load(redis, key.account, automation_id)
    return _ok({"automation": await _detail(redis, automation)}, 201)


@router.get("/automations")
async def list_automations(
    key: AutomationsKey,
    redis: RedisDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    items, total = await automations.page(redis, key.account, page, limit)
    return _ok(
        {
            "automations": [await _detail(redis, a) for a in items],
            "page": page,
            "limit": limit,
            "total": total,
        }
    )


@router.get("/automations/{automation_id}")
async def get_automation(
    automation_id: AutomationIdPath, key: AutomationsKey, redis: RedisDep
) -> JSONResponse:
    """The definition, with each step's counts of runs (waiting, done, failed)."""
    automation = await _load(redis, key.account, automation_id)
    return _ok({"automation": await _detail(redis, automation)})


@router.patch("/automations/{automation_id}")
async def update_automation(
    automation_id: AutomationIdPath,
    body: AutomationPatch,
    key: AutomationsKey,
    redis: RedisDep,
    settings: SettingsDep,
) -> JSONResponse:
    """A new version of the definition; runs already going keep the version they started
    with. Fields not sent stay as they are."""
    automation = await _load(redis, key.account, automation_id)
    merged: dict[str, Any] = {
        "name": automation.name,
        "allow_reentry": automation.allow_reentry,
        **automation.definition,
    }
    merged.update(body.model_dump(mode="json", exclude_unset=True, by_alias=True))
    try:
        definition = AutomationCreate.model_validate(merged)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    await automation_ops.check_steps(redis, settings, key.account, definition)
    updated = await automations.update(redis, automation, definition)
    return _ok({"automation": await _detail(redis, updated)})


@router.patch("/automations/{automation_id}/activate")
async def activate_automation(
    automation_id: AutomationIdPath, body: Activate, key: AutomationsKey, redis: RedisDep
) -> JSONResponse:
    """``{"active": true}`` starts enrolling; ``false`` stops new enrolments, and with
    ``"cancel_runs": true`` also stops the runs still going."""
    automation = await _load(redis, key.account, automation_id)
    await automations.set_active(redis, automation, body.active)
    cancelled = 0
    if not body.active and body.cancel_runs:
        cancelled = await automations.cancel_runs(redis, automation)
    automation = await _load(redis, key.account, automation_id)
    return _ok({"automation": await _detail(redis, automation), "runs_cancelled": cancelled})


@router.delete("/automations/{automation_id}")
async def delete_automation(
    automation_id: AutomationIdPath, key: AutomationsKey, redis: RedisDep
) -> JSONResponse:
    automation = await _load(redis, key.account, automation_id)
    await automations.delete(redis, automation)
    return _ok({"id": automation_id, "deleted": True})


@router.post("/automations/{automation_id}/enroll")
async def enroll_contact(
    automation_id: AutomationIdPath, body: Enroll, key: AutomationsKey, redis: RedisDep
) -> JSONResponse:
    """Manual enrolment of one contact (the automation must be active)."""
    automation = await _load(redis, key.account, automation_id)
    if not await contacts.exists(redis, key.account, body.contact_id):
        raise Rejected(Code.CONTACT_NOT_FOUND, f"Contact '{body.contact_id}' not found")
    run_id = new_id("run")
    outcome = await automations.enroll(redis, key.account, automation.id, body.contact_id, run_id)
    if outcome == "inactive":
        raise Rejected(Code.AUTOMATION_INACTIVE, "The automation is not active: activate it first")
    if outcome == "already_enrolled":
        raise Rejected(
            Code.ALREADY_ENROLLED,
            f"Contact '{body.contact_id}' was already enrolled (allow_reentry is false)",
        )
    if outcome != "ok":
        raise Rejected(Code.AUTOMATION_NOT_FOUND, f"Automation '{automation_id}' not found")
    return _ok({"run_id": run_id, "automation_id": automation_id}, 202)


@router.get("/automations/{automation_id}/runs")
async def list_runs(
    automation_id: AutomationIdPath,
    key: AutomationsKey,
    redis: RedisDep,
    status: Annotated[
        str | None, Query(pattern=r"^(active|waiting|done|failed|cancelled)$")
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    await _load(redis, key.account, automation_id)
    runs, total = await automations.runs_page(
        redis, key.account, automation_id, status, page, limit
    )
    return _ok({"runs": [_run(r) for r in runs], "page": page, "limit": limit, "total": total})


@router.get("/automation-runs/{run_id}")
async def get_run(run_id: RunIdPath, key: AutomationsKey, redis: RedisDep) -> JSONResponse:
    """A run's timeline: what each step did, and when."""
    run = await automations.load_run(redis, key.account, run_id)
    if run is None:
        raise Rejected(Code.RUN_NOT_FOUND, f"Run '{run_id}' not found")
    return _ok({"run": _run(run)})


@router.post("/track/event")
async def track_event(body: TrackEvent, key: AutomationsKey, redis: RedisDep) -> JSONResponse:
    """A custom event for a contact: enrols it in the active ``event.tracked`` automations
    whose ``event`` filter matches; their steps can use ``{{event.<property>}}``."""
    if not await contacts.exists(redis, key.account, body.contact_id):
        raise Rejected(Code.CONTACT_NOT_FOUND, f"Contact '{body.contact_id}' not found")
    runs = await triggers.fire(
        redis,
        key.account,
        "event.tracked",
        body.contact_id,
        facts={"event": body.event},
        event={"event": body.event, "properties": body.properties},
    )
    return _ok({"event": body.event, "runs": runs}, 202)
