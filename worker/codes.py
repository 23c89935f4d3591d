"""Every error code the service emits, and what each one means: one table.

A code is the stable, machine-readable slug of an error: the ``code`` of an API error
body, of a message's or a device's failure, of an attempt. ``Code`` names them all (a
``StrEnum``: a member *is* its string, so stored records and JSON are unchanged);
``MEANINGS`` says, per code:

- ``status``: the HTTP status it answers with — of the API's refusal, or of a
  synchronous send that failed with it (``send_status`` when the two differ);
- ``retry``: the providers' adapters raise it as ``RetryableError`` (try again later);
- ``throttle``: the sender's rate-limit key is slowed down for a while (penalised);
  ``pair_throttle``: only the recipient's own pacing key starts from empty;
- ``suspend``: the account's credentials or standing are bad (``AccountError``): the
  channel is stopped for every send of the account;
- ``prune``: the device token is dead (``InvalidTokenError``): it leaves its contact;
- ``channel``: the account's channel is at fault (missing, refused, stopped), never
  the recipient: a device's attempts do not count it;
- ``message``: the human message, where there is a fixed one.

What is done after a failed send is decided once, for both channels, in
``worker.delivery.policy`` from this table and the error's class. To add a code:
a member of ``Code``, its ``Meaning`` below (tests/unit/test_codes.py fails on a code
without one), and the provider adapter or the service that raises it.

This module imports nothing but the standard library: every layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Code(StrEnum):
    # --- The request itself (API refusals) --------------------------------------------
    INVALID_REQUEST = "invalid_request"
    INVALID_JSON = "invalid_json"
    INVALID_PHONE_NUMBER = "invalid_phone_number"
    INVALID_PUSH_TOKEN = "invalid_push_token"
    RESERVED_DATA_KEY = "reserved_data_key"
    INVALID_CSV = "invalid_csv"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    URL_NOT_ALLOWED = "url_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"
    # --- Who is asking --------------------------------------------------------------------
    UNAUTHORIZED = "unauthorized"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    FORBIDDEN = "forbidden"
    INVALID_SIGNATURE = "invalid_signature"
    RATE_LIMITED = "rate_limited"
    # --- What the request names -----------------------------------------------------------
    MESSAGE_NOT_FOUND = "message_not_found"
    DEAD_LETTER_NOT_FOUND = "dead_letter_not_found"
    CONTACT_NOT_FOUND = "contact_not_found"
    CONTACT_EXISTS = "contact_exists"
    PUSH_TOKEN_NOT_FOUND = "push_token_not_found"
    CAMPAIGN_NOT_FOUND = "campaign_not_found"
    CAMPAIGN_STATE_CONFLICT = "campaign_state_conflict"
    AUTOMATION_NOT_FOUND = "automation_not_found"
    AUTOMATION_INACTIVE = "automation_inactive"
    ALREADY_ENROLLED = "already_enrolled"
    RUN_NOT_FOUND = "run_not_found"
    WEBHOOK_NOT_FOUND = "webhook_not_found"
    WEBHOOK_LIMIT_REACHED = "webhook_limit_reached"
    DELIVERY_NOT_FOUND = "delivery_not_found"
    KEY_NOT_FOUND = "key_not_found"
    # --- The account's channels -----------------------------------------------------------
    CHANNEL_NOT_CONFIGURED = "channel_not_configured"
    PUSH_NOT_ENABLED = "push_not_enabled"
    PLATFORM_NOT_CONFIGURED = "platform_not_configured"
    CHANNEL_SUSPENDED = "channel_suspended"
    CHANNEL_AUTH_FAILED = "channel_auth_failed"
    ACCOUNT_RESTRICTED = "account_restricted"
    # --- Templates and the 24-hour window -------------------------------------------------
    TEMPLATE_NOT_FOUND = "template_not_found"
    TEMPLATE_NOT_APPROVED = "template_not_approved"
    TEMPLATE_PARAMETER_MISMATCH = "template_parameter_mismatch"
    TEMPLATE_PARAMETER_INVALID = "template_parameter_invalid"
    TEMPLATE_BODY_TOO_LONG = "template_body_too_long"
    TEMPLATE_PAUSED = "template_paused"
    TEMPLATE_DISABLED = "template_disabled"
    TEMPLATE_REQUIRED = "template_required"
    REENGAGEMENT_WINDOW_CLOSED = "reengagement_window_closed"
    # --- The recipient --------------------------------------------------------------------
    RECIPIENT_UNDELIVERABLE = "recipient_undeliverable"
    RECIPIENT_OPTED_OUT = "recipient_opted_out"
    ECOSYSTEM_LIMITED = "ecosystem_limited"
    RECIPIENT_RATE_LIMITED = "recipient_rate_limited"
    SPAM_RATE_LIMITED = "spam_rate_limited"
    TOKEN_UNREGISTERED = "token_unregistered"
    TOKEN_INVALID = "token_invalid"
    TOKEN_SENDER_MISMATCH = "token_sender_mismatch"
    NO_PHONE = "no_phone"
    NO_TOKEN = "no_token"
    # --- The provider ---------------------------------------------------------------------
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_TIMEOUT = "provider_timeout"
    PROVIDER_UNREACHABLE = "provider_unreachable"
    PROVIDER_TOKEN_REJECTED = "provider_token_rejected"
    PROVIDER_ERROR = "provider_error"
    INVALID_PROVIDER_REQUEST = "invalid_provider_request"
    INVALID_PAYLOAD = "invalid_payload"
    # --- Ours -------------------------------------------------------------------------------
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    SEND_FAILED = "send_failed"
    INTERNAL_ERROR = "internal_error"
    STORE_UNAVAILABLE = "store_unavailable"
    STORE_FULL = "store_full"


@dataclass(frozen=True)
class Meaning:
    status: int
    message: str | None = None
    retry: bool = False
    throttle: bool = False
    pair_throttle: bool = False
    suspend: bool = False
    prune: bool = False
    channel: bool = False
    # The status of a synchronous send that failed with this code, when it is not
    # ``status`` (a refusal's status would lie about who failed).
    send_status: int | None = None


# A send that failed for good for a reason of the provider's (retries exhausted, a 5xx,
# an answer we cannot read) answers 502; so does a code missing from the table.
PROVIDER_FAILED = 502

_422 = Meaning(422)  # the template, the window or the recipient: the caller can fix it
_PROVIDER = Meaning(PROVIDER_FAILED)
_RETRY = Meaning(PROVIDER_FAILED, retry=True)

MEANINGS: dict[Code, Meaning] = {
    Code.INVALID_REQUEST: Meaning(400),
    Code.INVALID_JSON: Meaning(400, "Request body is not valid JSON"),
    Code.INVALID_PHONE_NUMBER: Meaning(400),
    Code.INVALID_PUSH_TOKEN: Meaning(400),
    Code.RESERVED_DATA_KEY: Meaning(400),
    Code.INVALID_CSV: Meaning(400),
    Code.INVALID_IDEMPOTENCY_KEY: Meaning(
        400, "Idempotency-Key must be 1 to 255 printable characters"
    ),
    Code.IDEMPOTENCY_KEY_REUSED: Meaning(
        422, "This Idempotency-Key was already used with a different request body"
    ),
    Code.IDEMPOTENCY_IN_PROGRESS: Meaning(
        409, "A request with this Idempotency-Key is still in progress; retry shortly"
    ),
    Code.URL_NOT_ALLOWED: Meaning(400),
    # A notification too big for its platform. A request *body* past its route's limit is
    # refused by the HTTP layer with HTTP's own 413 (worker.api.errors.BodyTooLarge).
    Code.PAYLOAD_TOO_LARGE: Meaning(400),
    Code.UNSUPPORTED_MEDIA_TYPE: Meaning(415),
    Code.NOT_FOUND: Meaning(404),
    Code.METHOD_NOT_ALLOWED: Meaning(405),
    # Any other status the HTTP framework answers with itself (it keeps its own status).
    Code.HTTP_ERROR: Meaning(400),
    Code.UNAUTHORIZED: Meaning(401),
    Code.INSUFFICIENT_SCOPE: Meaning(403),
    Code.FORBIDDEN: Meaning(403),
    Code.INVALID_SIGNATURE: Meaning(401),
    # An API key past its rate (429), or a provider throttling the sender: retried, the
    # sender's limit slowed down; a send that still failed on it is the provider's doing.
    Code.RATE_LIMITED: Meaning(429, retry=True, throttle=True, send_status=PROVIDER_FAILED),
    Code.MESSAGE_NOT_FOUND: Meaning(404),
    Code.DEAD_LETTER_NOT_FOUND: Meaning(404),
    Code.CONTACT_NOT_FOUND: Meaning(404),
    Code.CONTACT_EXISTS: Meaning(409),
    Code.PUSH_TOKEN_NOT_FOUND: Meaning(404),
    Code.CAMPAIGN_NOT_FOUND: Meaning(404),
    Code.CAMPAIGN_STATE_CONFLICT: Meaning(409),
    Code.AUTOMATION_NOT_FOUND: Meaning(404),
    Code.AUTOMATION_INACTIVE: Meaning(409, "The automation is not active: activate it first"),
    Code.ALREADY_ENROLLED: Meaning(409),
    Code.RUN_NOT_FOUND: Meaning(404),
    Code.WEBHOOK_NOT_FOUND: Meaning(404),
    Code.KEY_NOT_FOUND: Meaning(404),
    Code.WEBHOOK_LIMIT_REACHED: Meaning(409),
    Code.DELIVERY_NOT_FOUND: Meaning(404),
    Code.CHANNEL_NOT_CONFIGURED: Meaning(
        403, "WhatsApp channel not configured for this account", channel=True
    ),
    Code.PUSH_NOT_ENABLED: Meaning(
        403, "Push notifications not enabled for this account", channel=True
    ),
    Code.PLATFORM_NOT_CONFIGURED: Meaning(PROVIDER_FAILED, channel=True),
    # Stopped after a credential refusal, until the channel is configured again.
    Code.CHANNEL_SUSPENDED: Meaning(403, channel=True),
    Code.CHANNEL_AUTH_FAILED: Meaning(403, suspend=True, channel=True),
    Code.ACCOUNT_RESTRICTED: Meaning(403, suspend=True, channel=True),
    Code.TEMPLATE_NOT_FOUND: _422,
    Code.TEMPLATE_NOT_APPROVED: _422,
    Code.TEMPLATE_PARAMETER_MISMATCH: _422,
    Code.TEMPLATE_PARAMETER_INVALID: _422,
    Code.TEMPLATE_BODY_TOO_LONG: _422,
    Code.TEMPLATE_PAUSED: _422,
    Code.TEMPLATE_DISABLED: _422,
    Code.TEMPLATE_REQUIRED: Meaning(
        422,
        "Free-form messages are only allowed within 24 hours of the customer's last "
        "message; send an approved template instead",
    ),
    Code.REENGAGEMENT_WINDOW_CLOSED: _422,
    Code.RECIPIENT_UNDELIVERABLE: _422,
    Code.RECIPIENT_OPTED_OUT: _422,
    Code.ECOSYSTEM_LIMITED: _422,
    # Meta's pair rate: this recipient got too much; only its own pacing waits.
    Code.RECIPIENT_RATE_LIMITED: Meaning(PROVIDER_FAILED, retry=True, pair_throttle=True),
    # Meta's spam limit: the number must rest.
    Code.SPAM_RATE_LIMITED: Meaning(PROVIDER_FAILED, retry=True, throttle=True),
    Code.TOKEN_UNREGISTERED: Meaning(PROVIDER_FAILED, prune=True),
    Code.TOKEN_INVALID: Meaning(PROVIDER_FAILED, prune=True),
    Code.TOKEN_SENDER_MISMATCH: Meaning(PROVIDER_FAILED, prune=True),
    # An automation's send step for a contact without a number / a push token.
    Code.NO_PHONE: Meaning(422, "the contact has no phone number"),
    Code.NO_TOKEN: Meaning(422, "the contact has no push token"),
    Code.PROVIDER_UNAVAILABLE: _RETRY,
    Code.PROVIDER_TIMEOUT: _RETRY,
    Code.PROVIDER_UNREACHABLE: _RETRY,
    # APNs said our provider JWT expired: a new one fixes it, at once.
    Code.PROVIDER_TOKEN_REJECTED: _RETRY,
    # An answer we cannot classify: never retried blindly. (A push client library that
    # fails outright raises it as retryable: nothing is known to have reached the
    # provider; worker.delivery.push.)
    Code.PROVIDER_ERROR: _PROVIDER,
    # A request our adapter built wrong: a bug here, not the caller's input.
    Code.INVALID_PROVIDER_REQUEST: _PROVIDER,
    # The provider refused the notification itself: never prunes the token.
    Code.INVALID_PAYLOAD: _PROVIDER,
    Code.EXPIRED: _PROVIDER,
    Code.CANCELLED: _PROVIDER,
    Code.SEND_FAILED: Meaning(PROVIDER_FAILED, "The message could not be sent"),
    # A bug while sending; the API's own bug is a 500, a send that met one a 502.
    Code.INTERNAL_ERROR: Meaning(500, "Internal error", send_status=PROVIDER_FAILED),
    Code.STORE_UNAVAILABLE: Meaning(503, "The message store is unavailable; try again shortly"),
    Code.STORE_FULL: Meaning(503, "The message store is full; try again later"),
}

# What an unknown code (a record written by another version) means: nothing special.
UNKNOWN = _PROVIDER


def meaning(code: str | None) -> Meaning:
    """The meaning of ``code``; a code missing from the table means nothing special."""
    try:
        return MEANINGS[Code(code)] if code is not None else UNKNOWN
    except ValueError:
        return UNKNOWN


def status(code: str) -> int:
    """The HTTP status of the API's refusal with ``code``."""
    return meaning(code).status


def failed_send_status(code: str | None) -> int:
    """The HTTP status of a synchronous send that failed for good with ``code``."""
    found = meaning(code)
    return found.send_status if found.send_status is not None else found.status


def message(code: Code) -> str:
    """The fixed human message of ``code`` (a ``KeyError`` names a code without one)."""
    text = MEANINGS[code].message
    if text is None:
        raise KeyError(f"{code!r} has no fixed message")
    return text
