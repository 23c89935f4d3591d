"""The rules FCM HTTP v1 enforces on ``messages:send``, and the check that applies them.

The request body is proto3 JSON for ``google.firebase.fcm.v1.Message``: Google's parser
refuses a field it does not know ("Cannot find field"), a value of the wrong type, an
unknown enum value, a non-string value in a string map. On top of the schema: exactly
one target; a ``fid`` is a Firebase installation id (22 characters of URL-safe base64); a
registration ``token`` has a token's shape; ``data`` keys FCM reserves; an ``android.ttl``
between 0 and 2,419,200 seconds (FCM's "Invalid TTL"); a notification image that is a URL;
an APNs payload (``apns.payload``, a free-form object in the schema) with an ``aps``
dictionary whose ``badge`` is an integer; 4,096 bytes of payload. (OAuth is checked
before any of it: ``PushSim``.)
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from worker.sim.rules import Refusal, Rule, table

MAX_PAYLOAD_BYTES = 4096
FID = re.compile(r"^[A-Za-z0-9_-]{22}$")
REGISTRATION_TOKEN = re.compile(r"^[A-Za-z0-9_:-]{20,4096}$")
_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
# FCM's longest time to live, and the default when a message has none: 4 weeks.
MAX_TTL_S = 2_419_200
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")

RULES = table(
    Rule("json", "a body that is not a JSON object", "INVALID_ARGUMENT", 400),
    Rule("unknown_field", "a field the Message schema does not have", "INVALID_ARGUMENT", 400),
    Rule(
        "type",
        "a value of the wrong type (string, bool, number, object, list)",
        "INVALID_ARGUMENT",
        400,
    ),
    Rule(
        "enum",
        "an enum value that does not exist (android.priority, visibility, …)",
        "INVALID_ARGUMENT",
        400,
    ),
    Rule(
        "format",
        "a duration or timestamp not in proto3 JSON form ('3.5s', RFC 3339)",
        "INVALID_ARGUMENT",
        400,
    ),
    Rule(
        "string_map",
        "a non-string value in data, android.data, webpush.headers, …",
        "INVALID_ARGUMENT",
        400,
    ),
    Rule(
        "reserved_key",
        "a data key 'from', 'message_type' or starting with google/gcm",
        "INVALID_ARGUMENT",
        400,
    ),
    Rule(
        "one_target",
        "none or more than one of token, fid, topic, condition",
        "INVALID_ARGUMENT",
        400,
    ),
    Rule(
        "fid", "a fid that is not a 22-character Firebase installation id", "INVALID_ARGUMENT", 400
    ),
    Rule("token", "a registration token that is not shaped like one", "INVALID_ARGUMENT", 400),
    Rule(
        "ttl",
        "an android.ttl below 0 or over 2,419,200 seconds (4 weeks): 'Invalid TTL'",
        "INVALID_ARGUMENT",
        400,
    ),
    Rule(
        "image",
        "a notification image (notification, android.notification, apns.fcm_options) that "
        "is not an http(s) URL",
        "INVALID_ARGUMENT",
        400,
    ),
    Rule(
        "apns_payload",
        "an apns.payload without an 'aps' dictionary, or whose aps.badge is not an integer",
        "INVALID_ARGUMENT",
        400,
    ),
    Rule("size", "more than 4,096 bytes of payload", "INVALID_ARGUMENT", 400),
)

# The Message schema: field → kind. A kind is "string", "bool", "int", "number",
# "duration", "timestamp", "struct" (any JSON object), ("enum", names), ("map", kind),
# ("list", kind), or a nested schema (dict).
_ANDROID_NOTIFICATION: dict[str, Any] = {
    **dict.fromkeys(
        [
            "title",
            "body",
            "icon",
            "color",
            "sound",
            "tag",
            "click_action",
            "body_loc_key",
            "title_loc_key",
            "channel_id",
            "ticker",
            "image",
        ],
        "string",
    ),
    "body_loc_args": ("list", "string"),
    "title_loc_args": ("list", "string"),
    **dict.fromkeys(
        [
            "sticky",
            "local_only",
            "default_sound",
            "default_vibrate_timings",
            "default_light_settings",
            "bypass_proxy_notification",
        ],
        "bool",
    ),
    "event_time": "timestamp",
    "notification_priority": (
        "enum",
        {
            "PRIORITY_UNSPECIFIED",
            "PRIORITY_MIN",
            "PRIORITY_LOW",
            "PRIORITY_DEFAULT",
            "PRIORITY_HIGH",
            "PRIORITY_MAX",
        },
    ),
    "visibility": ("enum", {"VISIBILITY_UNSPECIFIED", "PRIVATE", "PUBLIC", "SECRET"}),
    "vibrate_timings": ("list", "duration"),
    "notification_count": "int",
    "light_settings": {
        "color": dict.fromkeys(["red", "green", "blue", "alpha"], "number"),
        "light_on_duration": "duration",
        "light_off_duration": "duration",
    },
    "proxy": ("enum", {"PROXY_UNSPECIFIED", "ALLOW", "DENY", "IF_PRIORITY_LOWERED"}),
}
MESSAGE: dict[str, Any] = {
    "name": "string",
    "data": ("map", "string"),
    "notification": {"title": "string", "body": "string", "image": "string"},
    "android": {
        "collapse_key": "string",
        "priority": ("enum", {"NORMAL", "HIGH"}),
        "ttl": "duration",
        "restricted_package_name": "string",
        "data": ("map", "string"),
        "notification": _ANDROID_NOTIFICATION,
        "fcm_options": {"analytics_label": "string"},
        "direct_boot_ok": "bool",
        "bandwidth_constrained_ok": "bool",
        "restricted_satellite_ok": "bool",
    },
    "webpush": {
        "headers": ("map", "string"),
        "data": ("map", "string"),
        "notification": "struct",
        "fcm_options": {"link": "string", "analytics_label": "string"},
    },
    "apns": {
        "headers": ("map", "string"),
        "payload": "struct",
        "fcm_options": {"analytics_label": "string", "image": "string"},
        "live_activity_token": "string",
    },
    "fcm_options": {"analytics_label": "string"},
    "token": "string",
    "fid": "string",
    "topic": "string",
    "condition": "string",
}
REQUEST: dict[str, Any] = {"message": MESSAGE, "validate_only": "bool"}
_RESERVED_EXACT = {"from", "message_type"}
_RESERVED_PREFIXES = ("google", "gcm")


def _refuse(rule: str, message: str) -> Refusal:
    return Refusal(RULES[rule], message)


def _invalid_value(path: str, kind: str, value: Any) -> str:
    return f"Invalid value at '{path}' ({kind}), {json.dumps(value)}"


def _check_value(path: str, kind: Any, value: Any) -> Refusal | None:
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return _refuse("type", _invalid_value(path, "TYPE_MESSAGE", value))
        return _check_object(path, kind, value)
    if isinstance(kind, tuple):
        shape, inner = kind
        if shape == "enum":
            if not isinstance(value, str) or value.upper() not in inner:
                return _refuse("enum", _invalid_value(path, "TYPE_ENUM", value))
            return None
        if shape == "list":
            if not isinstance(value, list):
                return _refuse("type", _invalid_value(path, "TYPE_LIST", value))
            for i, item in enumerate(value):
                refused = _check_value(f"{path}[{i}]", inner, item)
                if refused:
                    return refused
            return None
        # a map of strings
        if not isinstance(value, dict):
            return _refuse("type", _invalid_value(path, "TYPE_MAP", value))
        for i, item in enumerate(value.values()):
            if not isinstance(item, str):
                return _refuse(
                    "string_map", _invalid_value(f"{path}[{i}].value", "TYPE_STRING", item)
                )
        return None
    scalar_ok = {
        "string": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, str) and value.lstrip("-").isdigit()),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "struct": isinstance(value, dict),
        "duration": isinstance(value, str),
        "timestamp": isinstance(value, str),
    }[kind]
    if not scalar_ok:
        return _refuse("type", _invalid_value(path, f"TYPE_{kind.upper()}", value))
    if kind == "duration" and not _DURATION.fullmatch(value):
        return _refuse("format", _invalid_value(path, "google.protobuf.Duration", value))
    if kind == "timestamp" and not _TIMESTAMP.fullmatch(value):
        return _refuse("format", _invalid_value(path, "google.protobuf.Timestamp", value))
    return None


def _check_object(path: str, schema: dict[str, Any], value: dict[str, Any]) -> Refusal | None:
    for name, item in value.items():
        if name not in schema:
            return _refuse(
                "unknown_field",
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{path}': "
                "Cannot find field.",
            )
        if item is None:
            continue  # proto3 JSON: null is the field's default
        refused = _check_value(f"{path}.{name}" if path else name, schema[name], item)
        if refused:
            return refused
    return None


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in value


def _check_options(message: dict[str, Any]) -> Refusal | None:
    """What FCM refuses in values the schema lets through: a TTL out of range, an image
    that is not a URL, an APNs payload Apple could not take."""
    android = message.get("android") or {}
    ttl = android.get("ttl")
    if ttl is not None and not 0 <= float(ttl[:-1]) <= MAX_TTL_S:
        return _refuse(
            "ttl",
            f"Invalid value at 'message.android.ttl', {json.dumps(ttl)}: the TTL is between "
            f"0 and {MAX_TTL_S} seconds (4 weeks)",
        )
    images = {
        "message.notification.image": (message.get("notification") or {}).get("image"),
        "message.android.notification.image": (android.get("notification") or {}).get("image"),
        "message.apns.fcm_options.image": (
            (message.get("apns") or {}).get("fcm_options") or {}
        ).get("image"),
    }
    for path, image in images.items():
        if image is not None and not _is_url(image):
            return _refuse("image", _invalid_value(path, "TYPE_STRING", image) + ": not a URL")
    payload = (message.get("apns") or {}).get("payload")
    if payload is not None:
        aps = payload.get("aps")
        if not isinstance(aps, dict):
            return _refuse(
                "apns_payload",
                "Payload of Apple Push Notification Service must contain an [aps] key.",
            )
        badge = aps.get("badge")
        if badge is not None and (not isinstance(badge, int) or isinstance(badge, bool)):
            return _refuse(
                "apns_payload",
                _invalid_value("message.apns.payload.aps.badge", "TYPE_INT32", badge),
            )
    return None


def check(body: Any) -> Refusal | None:
    """The rule FCM would refuse this request body by, or None."""
    if not isinstance(body, dict):
        return _refuse("json", "Invalid JSON payload received. Expected an object.")
    refused = _check_object("", REQUEST, body)
    if refused:
        return refused
    message = body.get("message")
    if not isinstance(message, dict):
        return _refuse("one_target", "Request contains an invalid argument: no message.")
    for key in message.get("data") or {}:
        lowered = key.lower()
        if lowered in _RESERVED_EXACT or lowered.startswith(_RESERVED_PREFIXES):
            return _refuse("reserved_key", f"Invalid data payload key: {key}")
    targets = [k for k in ("token", "fid", "topic", "condition") if message.get(k)]
    if len(targets) != 1:
        return _refuse("one_target", "Exactly one of token, fid, topic or condition is required")
    fid = message.get("fid")
    if fid is not None and not FID.fullmatch(fid):
        return _refuse(
            "fid",
            "Invalid value at 'message.fid': not a Firebase installation ID "
            "(22 characters; a registration token goes in 'token')",
        )
    token = message.get("token")
    if token is not None and not REGISTRATION_TOKEN.fullmatch(token):
        return _refuse("token", "The registration token is not a valid FCM registration token")
    refused = _check_options(message)
    if refused:
        return refused
    payload = {k: v for k, v in message.items() if k not in ("token", "fid", "topic", "condition")}
    if len(json.dumps(payload, separators=(",", ":")).encode()) > MAX_PAYLOAD_BYTES:
        return _refuse("size", "Message is too big")
    return None
