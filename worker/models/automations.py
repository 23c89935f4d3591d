"""Automations: a trigger and an ordered list of steps, as the platform's SDK sends them.

Validation that needs no Redis happens here (pydantic; every error's location names the
step, ``steps[2].seconds``); what needs the account's data (templates) happens in
``worker.services.automations``. Placeholders in texts: ``{{contact.name}}``,
``{{event.order_id}}``, with ``|default`` as in campaigns.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from worker.models import (
    MARKETING,
    ContactId,
    SendCategory,
    WhatsAppParameter,
    bounded_map,
    push_data,
)
from worker.models.timing import QuietHours, zone_named

TRIGGERS = ("contact.created", "contact.tag_added", "event.tracked", "manual")
_FILTERS: dict[str, set[str]] = {
    "contact.created": set(),
    "contact.tag_added": {"tag"},
    "event.tracked": {"event"},
    "manual": set(),
}
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# A jump: a step index, "next" (the following step) or "end".
Target = int | Literal["next", "end"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)


class Trigger(Body):
    type: Literal["contact.created", "contact.tag_added", "event.tracked", "manual"]
    filters: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_filters(self) -> Trigger:
        unknown = set(self.filters) - _FILTERS[self.type]
        if unknown:
            allowed = ", ".join(sorted(_FILTERS[self.type])) or "none"
            raise ValueError(
                f"trigger {self.type} has no filter {', '.join(sorted(unknown))} "
                f"(allowed: {allowed})"
            )
        return self


class SendWhatsApp(Body):
    type: Literal["send_whatsapp"]
    # What the send is for (docs/audience.md): a step is `marketing` unless it says
    # otherwise; a `transactional` one ignores opt-outs, quiet hours and caps.
    category: SendCategory = MARKETING
    # The step's own quiet hours, `false` for none; absent: the account's.
    quiet_hours: QuietHours | Literal[False] | None = None
    template_name: str | None = Field(default=None, min_length=1, max_length=512)
    # Absent: the contact's locale picks among the synced languages (models/locales.py).
    language: str | None = Field(default=None, min_length=2, max_length=15)
    parameters: list[WhatsAppParameter] = Field(default_factory=list, max_length=50)
    # Free-form text: only inside the contact's 24-hour window; outside it the fallback
    # template goes instead (and without one the step fails with template_required).
    text: str | None = Field(default=None, min_length=1, max_length=4096)
    fallback_template: str | None = Field(default=None, min_length=1, max_length=512)
    fallback_parameters: list[WhatsAppParameter] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _template_or_text(self) -> SendWhatsApp:
        if (self.template_name is None) == (self.text is None):
            raise ValueError("a send_whatsapp step has either template_name or text")
        if self.fallback_template is not None and self.text is None:
            raise ValueError("fallback_template goes with a free-form text")
        return self


class SendPush(Body):
    type: Literal["send_push"]
    category: SendCategory = MARKETING
    quiet_hours: QuietHours | Literal[False] | None = None
    title: str = Field(min_length=1, max_length=256)
    message: str = Field(min_length=1, max_length=2048)
    url: str | None = Field(default=None, max_length=2048)
    data: Annotated[dict[str, str] | None, AfterValidator(push_data)] = None


class Wait(Body):
    type: Literal["wait"]
    seconds: float | None = Field(default=None, gt=0, le=366 * 86400)
    # Or the next time of day "HH:MM" in the contact's time zone (attribute `timezone`),
    # else the account's (`timezone` here, default UTC).
    until: str | None = None
    timezone: str | None = None

    @model_validator(mode="after")
    def _one_delay(self) -> Wait:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("a wait step needs a positive `seconds` or an `until` time of day")
        if self.until is not None and not _TIME_OF_DAY.match(self.until):
            raise ValueError("`until` is a time of day, HH:MM (24 h)")
        if self.timezone is not None and zone_named(self.timezone) is None:
            raise ValueError(f"unknown time zone {self.timezone[:64]!r}")
        return self


class Check(Body):
    # The outcome of an earlier send step of this run...
    step: int | None = Field(default=None, ge=0)
    outcome: Literal["delivered", "failed"] | None = None
    # ...or a contact field's value, or a tag.
    field: str | None = Field(default=None, min_length=1)
    equals: str | None = None
    tag: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        kinds = [self.step is not None, self.field is not None, self.tag is not None]
        if sum(kinds) != 1:
            raise ValueError("a condition checks one of: a step's outcome, a field, a tag")
        if self.step is not None and self.outcome is None:
            raise ValueError("a condition on a step needs `outcome`: delivered or failed")
        return self


class Condition(Body):
    type: Literal["condition"]
    if_: Check = Field(alias="if")
    then: Target = "next"
    else_: Target = Field(default="end", alias="else")


class TagStep(Body):
    type: Literal["add_tag", "remove_tag"]
    tag: str = Field(min_length=1, max_length=128)


class UpdateField(Body):
    type: Literal["update_field"]
    field: str = Field(min_length=1, max_length=128)
    value: str | None


class Webhook(Body):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", max_length=2048)
    # The HMAC-SHA256 key for the X-Dispatch-Signature header.
    secret: str = Field(min_length=8, max_length=256)
    body: Annotated[dict[str, Any] | None, bounded_map(50, 64, 4096)] = None


Step = Annotated[
    SendWhatsApp | SendPush | Wait | Condition | TagStep | UpdateField | Webhook,
    Field(discriminator="type"),
]
SEND_STEPS = ("send_whatsapp", "send_push")


class AutomationCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    trigger: Trigger
    steps: list[Step] = Field(min_length=1, max_length=100)
    # A contact enrols once per automation unless this is true.
    allow_reentry: bool = False

    @model_validator(mode="after")
    def _jumps(self) -> AutomationCreate:
        for i, step in enumerate(self.steps):
            if not isinstance(step, Condition):
                continue
            for label, target in (("then", step.then), ("else", step.else_)):
                if isinstance(target, int) and not i < target < len(self.steps):
                    raise ValueError(
                        f"steps[{i}].{label}: jumps go forward, to a step after this one "
                        f"(got {target}; {len(self.steps)} steps)"
                    )
            checked = step.if_.step
            if checked is not None and (checked >= i or self.steps[checked].type not in SEND_STEPS):
                raise ValueError(f"steps[{i}].if.step: {checked} is not an earlier send step")
        return self


class AutomationPatch(Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    trigger: Trigger | None = None
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=100)
    allow_reentry: bool | None = None


class Activate(Body):
    active: bool
    # Deactivating: also stop the runs waiting in this automation.
    cancel_runs: bool = False


class Enroll(Body):
    contact_id: ContactId


class TrackEvent(Body):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    contact_id: ContactId
    event: str = Field(min_length=1, max_length=200)
    properties: Annotated[dict[str, Any], bounded_map(50, 64, 2048)] = Field(default_factory=dict)
