"""The rules APNs enforces on ``POST /3/device/{token}``, and the checks of the request
itself (the provider token's checks need the registered keys: ``PushSim``).

Apple answers a refusal with its status and ``{"reason": …}`` (plus ``timestamp`` for
410). Provider tokens: signed ES256 with a registered key (``kid``) by its team
(``iss``), at most an hour old, and a key's token replaced no more than once every 20
minutes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from worker.sim.rules import Refusal, Rule, table

MAX_PAYLOAD_BYTES = 4096
MAX_VOIP_PAYLOAD_BYTES = 5120
MAX_COLLAPSE_ID_BYTES = 64
TOKEN_MAX_AGE_S = 3600.0
TOKEN_MIN_REFRESH_S = 1200.0
DEVICE_TOKEN = re.compile(r"^(?:[0-9a-fA-F]{2}){32,100}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PUSH_TYPES = {
    "alert", "background", "location", "voip", "complication", "fileprovider", "mdm",
    "liveactivity", "pushtotalk", "widgets", "controls",
}  # fmt: skip

RULES = table(
    Rule("path", "a path other than /3/device/{token}", "BadPath", 404),
    Rule("method", "a method other than POST", "MethodNotAllowed", 405),
    Rule("device_token", "a device token that is not 64–200 hex characters", "BadDeviceToken", 400),
    Rule("missing_provider_token", "no bearer provider token", "MissingProviderToken", 403),
    Rule(
        "invalid_provider_token",
        "a token not signed ES256 by a registered key of its team (kid, iss)",
        "InvalidProviderToken",
        403,
    ),
    Rule("expired_provider_token", "a token over an hour old", "ExpiredProviderToken", 403),
    Rule(
        "provider_token_updates",
        "a key's new token less than 20 minutes after its previous one",
        "TooManyProviderTokenUpdates",
        429,
    ),
    Rule("missing_topic", "no apns-topic", "MissingTopic", 400),
    Rule("topic", "a topic the key is not allowed to send to", "TopicDisallowed", 400),
    Rule("push_type", "apns-push-type missing or not one of Apple's", "InvalidPushType", 400),
    Rule(
        "priority",
        "apns-priority other than 1, 5, 10; 10 for a background push or for a payload "
        "holding only content-available",
        "BadPriority",
        400,
    ),
    Rule("collapse_id", "apns-collapse-id over 64 bytes", "BadCollapseId", 400),
    Rule("expiration", "apns-expiration that is not a UNIX time", "BadExpirationDate", 400),
    Rule("apns_id", "apns-id that is not a UUID", "BadMessageId", 400),
    Rule("payload_empty", "an empty body, or one without an 'aps' dictionary", "PayloadEmpty", 400),
    Rule("payload_size", "a body over 4,096 bytes (5,120 for VoIP)", "PayloadTooLarge", 413),
)


def refusal(rule: str) -> Refusal:
    return Refusal(RULES[rule], RULES[rule].error)


_refuse = refusal


def check_request(method: str, path_token: str | None) -> Refusal | None:
    """The request line's rules (before the provider token's): path, method, device token.
    ``path_token`` is the device token from a ``/3/device/…`` path, None for another path."""
    if path_token is None:
        return _refuse("path")
    if method != "POST":
        return _refuse("method")
    if not DEVICE_TOKEN.fullmatch(path_token):
        return _refuse("device_token")
    return None


def check_headers(headers: dict[str, str], body: bytes) -> Refusal | None:
    """apns-* headers and the payload (after the provider token and the topic)."""
    push_type = headers.get("apns-push-type")
    if push_type not in PUSH_TYPES:
        return _refuse("push_type")
    try:
        payload: Any = json.loads(body) if body else None
    except ValueError:
        payload = None
    aps = payload.get("aps") if isinstance(payload, dict) else None
    # Apple: 10 must trigger an alert, a sound or a badge; a background push (and one
    # whose payload has only content-available) takes 5.
    silent = isinstance(aps, dict) and set(aps) == {"content-available"}
    priority = headers.get("apns-priority")
    if priority is not None and (
        priority not in ("1", "5", "10")
        or (priority == "10" and (push_type == "background" or silent))
    ):
        return _refuse("priority")
    collapse_id = headers.get("apns-collapse-id")
    if collapse_id is not None and len(collapse_id.encode()) > MAX_COLLAPSE_ID_BYTES:
        return _refuse("collapse_id")
    expiration = headers.get("apns-expiration")
    if expiration is not None and not (expiration.isascii() and expiration.isdigit()):
        return _refuse("expiration")
    apns_id = headers.get("apns-id")
    if apns_id is not None and not _UUID.fullmatch(apns_id):
        return _refuse("apns_id")
    limit = MAX_VOIP_PAYLOAD_BYTES if push_type == "voip" else MAX_PAYLOAD_BYTES
    if len(body) > limit:
        return _refuse("payload_size")
    if not isinstance(aps, dict):
        return _refuse("payload_empty")
    return None
