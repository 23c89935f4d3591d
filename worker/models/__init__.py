"""Pydantic models: API request bodies, stored records, and what a provider returns.

Validation errors that map to a specific API error code are raised as
``PydanticCustomError`` whose *type* is that code (see ``api.errors``).
"""

from __future__ import annotations

import functools
import json
import re
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from worker.config import FcmSenderName
from worker.models.push_payload import FCM_TOKEN_RE, MAX_TTL_S, Priority, reserved_data_key
from worker.models.timing import QuietHours, TimeOfDay

ACCOUNT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CONTACT_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# BCP-47-ish as WhatsApp uses it: "en", "en_US", "pt_BR", "zh_Hant_TW".
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8}){0,3}$")
TEMPLATE_NAME_RE = re.compile(r"^[a-z0-9_]{1,512}$")
APNS_TOKEN_RE = re.compile(r"^(?:[0-9a-fA-F]{2}){32,100}$")
# What WhatsApp refuses in a template parameter (error 132018): a newline, a tab, or more
# than four consecutive spaces.
_WA_PARAMETER_FORBIDDEN = re.compile(r"[\n\t]| {5,}")
# A filled-in template body is at most this many characters (error 132005).
WHATSAPP_BODY_MAX_CHARS = 1024


@functools.lru_cache(maxsize=65_536)
def iso(ts: float | None) -> str | None:
    """A stored timestamp as the API and the views show it: ISO 8601, UTC, milliseconds."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _valid_number(value: str) -> bool:
    # libphonenumber's parse and validity check cost ~100 µs, more than the rest of a
    # request's validation; the answer for a number never changes, and OTPs and
    # campaigns reach the same numbers again and again.
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(value, None)))
    except phonenumbers.NumberParseException:
        return False


def e164(value: str) -> str:
    """Accept only a valid number already written in E.164 (``+`` and digits)."""
    if not re.fullmatch(r"\+[1-9]\d{6,14}", value) or not _valid_number(value):
        raise PydanticCustomError("invalid_phone_number", "Invalid phone number format")
    return value


def whatsapp_parameter(value: str) -> str:
    """A template parameter WhatsApp accepts; else a 422 (``template_parameter_invalid``)
    that names it, before anything is stored or sent."""
    if not value:
        raise PydanticCustomError(
            "template_parameter_invalid", "WhatsApp refuses an empty template parameter"
        )
    if _WA_PARAMETER_FORBIDDEN.search(value):
        raise PydanticCustomError(
            "template_parameter_invalid",
            "WhatsApp refuses a template parameter with a newline, a tab or more than 4 "
            "consecutive spaces",
        )
    if len(value) > WHATSAPP_BODY_MAX_CHARS:
        raise PydanticCustomError(
            "template_parameter_invalid",
            f"A template parameter longer than {WHATSAPP_BODY_MAX_CHARS} characters cannot "
            "fit WhatsApp's limit on the filled-in body",
        )
    return value


def push_data(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Custom data for a push: no key FCM refuses (for every device of the request)."""
    for key in value or {}:
        if not key:
            raise PydanticCustomError("invalid_request", "A data key cannot be empty")
        if reserved_data_key(key):
            raise PydanticCustomError(
                "reserved_data_key",
                "'{key}' is reserved by FCM (from, message_type, and keys starting with "
                "google or gcm); rename it",
                {"key": key},
            )
    return value


def bounded_map(max_items: int, max_key_chars: int, max_value_bytes: int) -> AfterValidator:
    """A JSON object a tenant stores with us (contact attributes, event properties, a
    webhook's body): at most ``max_items`` keys of ``max_key_chars`` characters, each value
    at most ``max_value_bytes`` of JSON. A 400 naming the field otherwise."""

    def check(value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if len(value) > max_items:
            raise PydanticCustomError("invalid_request", "at most {n} keys", {"n": max_items})
        for key, item in value.items():
            if not key or len(key) > max_key_chars:
                raise PydanticCustomError(
                    "invalid_request",
                    "keys are 1 to {n} characters ('{key}…' is not)",
                    {"n": max_key_chars, "key": key[:20]},
                )
            if len(json.dumps(item, separators=(",", ":")).encode()) > max_value_bytes:
                raise PydanticCustomError(
                    "invalid_request",
                    "the value of '{key}' is over {n} bytes",
                    {"key": key[:64], "n": max_value_bytes},
                )
        return value

    return AfterValidator(check)


# Limits on what a tenant stores per contact and per event: enough for any CRM field,
# small enough that a million contacts stay in memory (Redis keeps them all).
Attributes = Annotated[dict[str, Any] | None, bounded_map(100, 64, 2048)]
E164 = Annotated[str, AfterValidator(e164)]
WhatsAppParameter = Annotated[
    str, StringConstraints(max_length=32768), AfterValidator(whatsapp_parameter)
]
PushData = Annotated[dict[str, Any] | None, AfterValidator(push_data)]
ContactId = Annotated[str, StringConstraints(pattern=CONTACT_ID_RE.pattern)]
Language = Annotated[str, StringConstraints(pattern=LANGUAGE_RE.pattern)]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
# A deep link may use the app's own scheme (myapp://orders/1); an icon is fetched over HTTP(S).
Url = Annotated[str, StringConstraints(max_length=2048, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")]
# A push's collapse identity (APNs apns-collapse-id, at most 64 bytes; Android's tag and
# collapse_key; the web notification's tag): a notification with the same one replaces
# the one shown. Without one, the message's own id is used.
CollapseId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:~-]+$")
]
HttpUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://\S+$")]
# What a send is for, which a recipient may opt out of (docs/audience.md): the built-in
# `transactional` (the single-send API's default: it bypasses preferences unless the caller
# asks) and `marketing` (a campaign's default), or a name of the account's own.
SendCategory = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
TRANSACTIONAL = "transactional"
MARKETING = "marketing"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PUSH_BADGE_MAX = 99_999
PUSH_SOUND_MAX_CHARS = 256
PUSH_THREAD_ID_MAX_CHARS = 64
PUSH_IMAGE_MAX_CHARS = 2048


def printable(value: str) -> str:
    """A name a device looks up (a sound file, a thread): no control characters."""
    if _CONTROL.search(value):
        raise PydanticCustomError("invalid_request", "must not contain control characters")
    return value


def https_url(value: str) -> str:
    """An address a device downloads from: https only (iOS refuses plain http by default,
    and FCM takes nothing else as a web push image)."""
    parts = urlsplit(value)
    if len(value) > PUSH_IMAGE_MAX_CHARS or parts.scheme != "https" or not parts.netloc:
        raise PydanticCustomError(
            "invalid_request",
            "must be an https URL of at most {n} characters",
            {"n": PUSH_IMAGE_MAX_CHARS},
        )
    if re.search(r"\s", value):
        raise PydanticCustomError("invalid_request", "must be a URL without spaces")
    return value


# Integers given as JSON numbers only: "60", 60.0 or true are refused, not converted.
PushTtl = Annotated[int, Field(strict=True, ge=0, le=MAX_TTL_S)]
PushBadge = Annotated[int, Field(strict=True, ge=0, le=PUSH_BADGE_MAX)]
PushSound = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PUSH_SOUND_MAX_CHARS),
    AfterValidator(printable),
]
PushThreadId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PUSH_THREAD_ID_MAX_CHARS),
    AfterValidator(printable),
]
PushImage = Annotated[str, AfterValidator(https_url)]


class Scope(StrEnum):
    """What a key may do. ``send``: single sends, and the status of the account's sends
    (without their content or the recipient's number); ``campaigns``: campaigns, content
    included; ``contacts``: contact data; ``automations``; ``webhooks``: event webhook
    endpoints (an endpoint gets the events its creating key could read); ``admin``: all."""

    SEND = "send"
    CAMPAIGNS = "campaigns"
    CONTACTS = "contacts"
    AUTOMATIONS = "automations"
    WEBHOOKS = "webhooks"
    ADMIN = "admin"


class Channel(StrEnum):
    WHATSAPP = "whatsapp"
    PUSH = "push"


class MessageStatus(StrEnum):
    QUEUED = "queued"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (MessageStatus.SENT, MessageStatus.FAILED)


# --- API bodies -------------------------------------------------------------


class StrictBody(BaseModel):
    # Unknown fields are ignored, so clients written against a newer spec still work.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class TemplateParameter(StrictBody):
    type: Literal["text"]
    text: WhatsAppParameter


# The longest a send may ask to stay worth sending (a message record lives about this long).
MESSAGE_TTL_MAX_S = 7 * 86_400


def check_expiry(ttl_s: int | None, expires_at: datetime | None) -> None:
    if ttl_s is not None and expires_at is not None:
        raise PydanticCustomError("invalid_request", "Give 'ttl_s' or 'expires_at', not both")
    if expires_at is not None:
        at = (expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)).timestamp()
        if at <= time.time():
            raise PydanticCustomError("invalid_request", "'expires_at' is in the past")
        if at > time.time() + MESSAGE_TTL_MAX_S:
            raise PydanticCustomError(
                "invalid_request", "'expires_at' is more than {n} days ahead", {"n": 7}
            )


def expiry_of(created_at: float, ttl_s: int | None, expires_at: datetime | None) -> float | None:
    """When a send stops being worth sending: ``expires_at`` (a time without a zone is
    UTC), or ``ttl_s`` after its creation; None without either (or with a push's ``ttl_s``
    of 0, which asks the provider to deliver at once or never, not us to stop retrying)."""
    if expires_at is not None:
        return (expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)).timestamp()
    return created_at + ttl_s if ttl_s else None


class WhatsAppSendRequest(StrictBody):
    to: E164
    contact_id: ContactId | None = None
    template_name: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    parameters: list[TemplateParameter] = Field(default_factory=list, max_length=100)
    message: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    language: Language = "en"
    category: SendCategory = TRANSACTIONAL
    # A transactional send checks the recipient's preferences only when asked to.
    respect_preferences: bool = False
    # Worth sending until then (a retry or a redrive after it ends the message `expired`).
    ttl_s: Annotated[int, Field(strict=True, ge=1, le=MESSAGE_TTL_MAX_S)] | None = None
    expires_at: datetime | None = None

    @model_validator(mode="after")
    def _expiry(self) -> WhatsAppSendRequest:
        check_expiry(self.ttl_s, self.expires_at)
        return self

    @model_validator(mode="after")
    def _template_or_message(self) -> WhatsAppSendRequest:
        if (self.template_name is None) == (self.message is None):
            raise PydanticCustomError(
                "invalid_request",
                "Exactly one of 'template_name' or 'message' is required",
            )
        if self.message is not None and self.parameters:
            raise PydanticCustomError(
                "invalid_request",
                "'parameters' only apply to a template send, not to a free-form 'message'",
            )
        return self


class PushTokenIn(StrictBody):
    platform: Literal["fcm", "apns"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]

    @model_validator(mode="after")
    def _token_shape(self) -> PushTokenIn:
        if self.platform == "apns" and not APNS_TOKEN_RE.fullmatch(self.token):
            raise PydanticCustomError(
                "invalid_push_token",
                "An APNs token is hexadecimal of even length, 64 to 200 characters",
            )
        if self.platform == "fcm" and not FCM_TOKEN_RE.fullmatch(self.token):
            raise PydanticCustomError(
                "invalid_push_token",
                "An FCM token is a registration token (20 to 4096 letters, digits, '_', '-' "
                "and ':') or a 22-character Firebase installation id",
            )
        return self


class PushOptions(StrictBody):
    """How a push is delivered, the same for every device of the message, on every attempt
    (docs/api.md; each platform's field: ``worker.models.push_payload``). None: not sent,
    the platform's default applies. Never templated in a campaign."""

    priority: Priority | None = None
    ttl_s: PushTtl | None = None  # how long the provider may hold it for an offline device
    badge: PushBadge | None = None
    sound: PushSound | None = None
    thread_id: PushThreadId | None = None
    image: PushImage | None = None

    def push_options(self) -> dict[str, Any]:
        """The options given, by name (as ``Notification`` and the message record take them)."""
        return {
            name: getattr(self, name) for name in PUSH_OPTIONS if getattr(self, name) is not None
        }


PUSH_OPTIONS = tuple(PushOptions.model_fields)


class PushSendRequest(PushOptions):
    contact_id: ContactId
    title: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    message: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    url: Url | None = None
    icon: HttpUrl | None = None
    data: PushData = None
    collapse_id: CollapseId | None = None
    category: SendCategory = TRANSACTIONAL
    respect_preferences: bool = False
    # Worth sending until then; `ttl_s` (above, over 0) says the same from now.
    expires_at: datetime | None = None

    @model_validator(mode="after")
    def _expiry(self) -> PushSendRequest:
        check_expiry(self.ttl_s, self.expires_at)
        return self


class PreferenceTarget(StrictBody):
    """What a contact opts out of (or back into): a channel, a category, both (that
    channel for that category), or neither (every send but a transactional one)."""

    channel: Literal["whatsapp", "push"] | None = None
    category: SendCategory | None = None


class PreferencesPatch(StrictBody):
    opt_out: list[PreferenceTarget] = Field(default_factory=list, max_length=50)
    opt_in: list[PreferenceTarget] = Field(default_factory=list, max_length=50)


class ContactBody(StrictBody):
    phone: E164 | None = None
    email: (
        Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None
    ) = None
    name: Annotated[str, StringConstraints(max_length=256)] | None = None
    attributes: Attributes = None
    # Added to the contact's tags (a PATCH never removes one); tags make segments.
    tags: list[Tag] | None = Field(default=None, max_length=100)
    push_tokens: list[PushTokenIn] | None = Field(default=None, max_length=100)
    preferences: PreferencesPatch | None = None


class ContactCreate(ContactBody):
    id: ContactId | None = None


# --- campaigns ----------------------------------------------------------------

# ``{{name}}``, ``{{city|there}}``: a contact field or attribute, with an optional default.
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*(?:\|([^}]*))?\}\}")


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class WhatsAppContent(StrictBody):
    """A template; each parameter may use contact fields: ``"Hi {{name|there}}"``."""

    channel: Literal["whatsapp"] = "whatsapp"
    template_name: Annotated[str, StringConstraints(pattern=TEMPLATE_NAME_RE.pattern)]
    # Absent: each contact's locale picks among the synced languages (models/locales.py).
    language: Language | None = None
    parameters: list[WhatsAppParameter] = Field(default_factory=list, max_length=100)


class PushContent(PushOptions):
    """The push send's fields; title, message, url and data's strings may use placeholders
    (the options may not)."""

    channel: Literal["push"] = "push"
    title: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    message: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    url: Url | None = None
    icon: HttpUrl | None = None
    data: PushData = None
    collapse_id: CollapseId | None = None


Content = Annotated[WhatsAppContent | PushContent, Field(discriminator="channel")]
AttrValue = str | int | float | bool


class Segment(StrictBody):
    """Contacts with this tag and/or whose attributes equal these values."""

    tag: Tag | None = None
    attributes: dict[str, AttrValue] = Field(default_factory=dict, max_length=20)

    @model_validator(mode="after")
    def _not_empty(self) -> Segment:
        if self.tag is None and not self.attributes:
            raise PydanticCustomError(
                "invalid_request", "A segment needs a 'tag' or 'attributes' to match"
            )
        return self


class Audience(StrictBody):
    """Exactly one of: a list of contact ids, a segment, or every contact."""

    contact_ids: list[ContactId] | None = Field(default=None, min_length=1, max_length=10_000)
    segment: Segment | None = None
    all: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> Audience:
        chosen = [self.contact_ids is not None, self.segment is not None, self.all]
        if sum(chosen) != 1:
            raise PydanticCustomError(
                "invalid_request",
                "The audience is exactly one of 'contact_ids', 'segment' or 'all': true",
            )
        return self


def _content_channel(data: Any) -> Any:
    """The content's kind is the campaign's channel: the client does not repeat it."""
    if isinstance(data, dict) and isinstance(data.get("content"), dict):
        channel = data.get("channel")
        if isinstance(channel, str) and "channel" not in data["content"]:
            data = {**data, "content": {**data["content"], "channel": channel}}
    return data


class CampaignCreate(StrictBody):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    channel: Channel
    content: Content
    audience: Audience
    # Contacts opted out of it are skipped (counted by reason); `transactional` skips none.
    category: SendCategory = MARKETING
    # Quiet hours for this campaign: a window of its own, `false` for none; absent, the
    # account's (PUT /api/v1/settings/quiet_hours). A transactional campaign has none.
    quiet_hours: QuietHours | Literal[False] | None = None
    # Each contact gets it at this time of day in its own zone (the next one after the
    # campaign starts), zones in the order their time comes.
    send_at_local: TimeOfDay | None = None

    @model_validator(mode="before")
    @classmethod
    def _channel(cls, data: Any) -> Any:
        return _content_channel(data)

    @model_validator(mode="after")
    def _content_matches(self) -> CampaignCreate:
        if self.content.channel != self.channel.value:
            raise PydanticCustomError(
                "invalid_request", "The content does not match the campaign's channel"
            )
        return self


class CampaignPatch(StrictBody):
    """A draft's changes: any of the fields, each replacing the stored one."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    channel: Channel | None = None
    content: dict[str, Any] | None = None
    audience: dict[str, Any] | None = None
    category: SendCategory | None = None
    quiet_hours: QuietHours | Literal[False] | None = None
    send_at_local: TimeOfDay | None = None


class CampaignSend(StrictBody):
    # ISO 8601 (a time without a zone is UTC) or Unix seconds; absent or past means now.
    send_at: datetime | None = None


# --- stored records -----------------------------------------------------------


# Keys made before the `campaigns` scope existed used `send` for campaigns too; they keep
# that, so no client breaks on upgrade (`dispatch keys list` marks them "legacy send").
SCOPES_VERSION = 2


class ApiKeyRecord(BaseModel):
    id: str
    account: str
    scopes: list[Scope]
    prefix: str
    created_at: float
    revoked_at: float | None = None
    # What the key is for, as its owner named it (optional; records made before have none).
    name: str | None = None
    scopes_version: int = 1  # what records written before version 2 read as

    @property
    def legacy_send(self) -> bool:
        return self.scopes_version < SCOPES_VERSION and Scope.SEND in self.scopes

    def allows(self, scope: Scope) -> bool:
        if Scope.ADMIN in self.scopes or scope in self.scopes:
            return True
        return scope is Scope.CAMPAIGNS and self.legacy_send


KEY_NAME_MAX_CHARS = 100


class KeyCreate(StrictBody):
    """``POST /api/v1/keys``: an unknown scope is a 400 naming ``scopes``."""

    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    name: Annotated[str, StringConstraints(max_length=KEY_NAME_MAX_CHARS)] | None = None


class WhatsAppConfig(BaseModel):
    """What the worker needs to call the Graph API for one account."""

    phone_number_id: str
    waba_id: str
    access_token: SecretStr
    app_secret: SecretStr | None = None
    verify_token: SecretStr | None = None
    base_url: str
    api_version: str
    # Messages per second for this number (Meta: 80 by default, up to 1,000 upgraded);
    # None means DISPATCH_WHATSAPP_RATE_PER_S.
    rate_per_s: float | None = None


class FcmConfig(BaseModel):
    """A Firebase project: its service account (with the private key) and endpoints."""

    project_id: str
    service_account: SecretStr  # the service-account JSON, as given
    # Overrides for a simulator or a test fake; None means Google's own endpoints.
    endpoint: str | None = None
    ca_file: str | None = None
    rate_per_s: float | None = None
    # The account's own choice of FCM sender, over the workers' DISPATCH_FCM_SENDER: the
    # lean transport tried account by account.
    sender: FcmSenderName | None = None


class ApnsConfig(BaseModel):
    """Token-based (.p8) APNs credentials for one app (topic)."""

    key: SecretStr  # the .p8 private key, PEM
    key_id: str
    team_id: str
    topic: str
    sandbox: bool = False
    # host:port of a simulator or test fake; None means Apple's servers.
    endpoint: str | None = None
    ca_file: str | None = None
    rate_per_s: float | None = None


class Template(BaseModel):
    name: str
    language: str
    category: str = ""
    status: str = "APPROVED"
    body_parameters: int = 0
    # The BODY with its {{n}} placeholders: the filled-in text is checked against
    # WhatsApp's limit before a send is accepted.
    body_text: str = ""


class Attempt(BaseModel):
    attempt: int
    at: float
    outcome: Literal["sent", "retry", "failed"]
    latency_ms: float | None = None
    provider_message_id: str | None = None
    error: str | None = None
    code: str | None = None
    provider_code: str | None = None
    retry_in_s: float | None = None
    # WhatsApp: "status_report" when the attempt records an earlier send whose answer never
    # came, found sent by the provider's status webhook (no second request was made).
    confirmed_by: Literal["status_report"] | None = None
    # Push: how the attempt's devices came out.
    delivered: int | None = None
    failed: int | None = None
    retrying: int | None = None


class SendResult(BaseModel):
    """A provider's answer to one accepted message."""

    provider_message_id: str
    latency_ms: float
