"""Event webhooks: the events a customer's endpoint can subscribe to, and the endpoint.

An endpoint is an account's URL that receives signed events (Standard Webhooks:
``webhook-id``, ``webhook-timestamp``, ``webhook-signature``). Each event type is
readable under one scope; an endpoint gets only the types the key that created it could
read (``*`` means all of those), so an event never tells a subscriber what its key could
not have asked for.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from worker.models import Scope, StrictBody


class EventType(StrEnum):
    MESSAGE_SENT = "message.sent"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_READ = "message.read"
    MESSAGE_FAILED = "message.failed"
    MESSAGE_DEAD_LETTERED = "message.dead_lettered"
    PUSH_DELIVERED = "push.delivered"
    PUSH_FAILED = "push.failed"
    TOKEN_PRUNED = "token.pruned"  # noqa: S105 (an event name)
    CAMPAIGN_STARTED = "campaign.started"
    CAMPAIGN_COMPLETED = "campaign.completed"
    AUTOMATION_RUN_COMPLETED = "automation.run.completed"
    AUTOMATION_RUN_FAILED = "automation.run.failed"
    # Sent only by ``POST /api/v1/webhooks/{id}/test``, to that endpoint.
    WEBHOOK_TEST = "webhook.test"


# The scope a key needs to read each event type through the API: a message's fate is the
# `send` scope's (GET /messages/{id}), a token's the `contacts` scope's, and so on.
EVENT_SCOPES: dict[EventType, Scope] = {
    EventType.MESSAGE_SENT: Scope.SEND,
    EventType.MESSAGE_DELIVERED: Scope.SEND,
    EventType.MESSAGE_READ: Scope.SEND,
    EventType.MESSAGE_FAILED: Scope.SEND,
    EventType.MESSAGE_DEAD_LETTERED: Scope.SEND,
    EventType.PUSH_DELIVERED: Scope.SEND,
    EventType.PUSH_FAILED: Scope.SEND,
    EventType.TOKEN_PRUNED: Scope.CONTACTS,
    EventType.CAMPAIGN_STARTED: Scope.CAMPAIGNS,
    EventType.CAMPAIGN_COMPLETED: Scope.CAMPAIGNS,
    EventType.AUTOMATION_RUN_COMPLETED: Scope.AUTOMATIONS,
    EventType.AUTOMATION_RUN_FAILED: Scope.AUTOMATIONS,
}
SUBSCRIBABLE = tuple(EVENT_SCOPES)
ALL_EVENTS = "*"

MAX_ENDPOINTS_PER_ACCOUNT = 20
MAX_DESCRIPTION_CHARS = 500

Description = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS)]
# What a subscription names: an event type, or "*" (every type the endpoint may read).
EventName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _events(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    known = {*SUBSCRIBABLE, ALL_EVENTS}
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ValueError(
            f"unknown event type {unknown[0]!r}; one of: {', '.join(SUBSCRIBABLE)}, or '*'"
        )
    return sorted(set(value))


class WebhookCreate(StrictBody):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    events: list[EventName] = Field(
        default_factory=lambda: [ALL_EVENTS], min_length=1, max_length=len(SUBSCRIBABLE) + 1
    )
    description: Description = ""
    active: bool = True

    _check_events = field_validator("events")(_events)


class WebhookUpdate(StrictBody):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    events: list[EventName] | None = Field(
        default=None, min_length=1, max_length=len(SUBSCRIBABLE) + 1
    )
    description: Description | None = None
    active: bool | None = None
    # A new signing secret, shown once in the answer; the old one stops signing at once.
    rotate_secret: bool = False

    _check_events = field_validator("events")(_events)


class Endpoint(BaseModel):
    """An endpoint as stored (its secret sealed: ``worker.store.secrets``)."""

    id: str
    account: str
    url: str
    events: list[str]
    description: str = ""
    active: bool = True
    # Every scope the key that created it allows (admin expanded): what its events may tell.
    scopes: list[Scope]
    created_at: float
    updated_at: float
    # Set when the service stopped delivering to it (failing for too long); cleared when
    # it is activated again.
    disabled_reason: str | None = None
    disabled_at: float | None = None

    def readable(self) -> list[EventType]:
        """The event types this endpoint's creator could read."""
        return [t for t, scope in EVENT_SCOPES.items() if scope in self.scopes]

    def wants(self, event: EventType) -> bool:
        if event not in self.readable():
            return False
        return ALL_EVENTS in self.events or event in self.events


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # queued, not tried yet
    RETRYING = "retrying"  # tried, waiting for its next attempt
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed
    DROPPED = "dropped"  # the endpoint's backlog was full


class Delivery(BaseModel):
    """One event for one endpoint, as stored (a hash of strings)."""

    id: str
    endpoint_id: str
    event_id: str
    type: str
    created_at: float
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    # The event as posted (JSON); not shown in listings.
    body: str = ""

    @field_validator(
        "last_status",
        "last_attempt_at",
        "next_attempt_at",
        "delivered_at",
        "last_error",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value
