"""How one push notification (the spec's title/message/url/icon/data) looks on each platform.

Pure functions, shared by the API (the 4,096-byte check happens before anything
is enqueued) and the provider adapters (which send exactly these shapes).

FCM ``data`` values must be strings. A string is sent as is; any other JSON value
(number, boolean, object, array) is sent as its compact JSON text, so ``3`` becomes
``"3"``, ``true`` becomes ``"true"`` and ``{"a": 1}`` becomes ``'{"a":1}'``; a null
value is left out. ``url`` and ``icon`` are also put in ``data`` (unless ``data``
already has those keys) so an app's own handler can read them on every platform.
APNs payloads carry ``data`` as the JSON object it was given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_PAYLOAD_BYTES = 4096
PLATFORM_NAMES = {"fcm": "FCM", "apns": "APNs"}


@dataclass(frozen=True)
class Notification:
    title: str
    body: str
    url: str | None = None
    icon: str | None = None
    data: dict[str, Any] | None = None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def fcm_data(note: Notification) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (note.data or {}).items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, str) else _compact(value)
    if note.url is not None:
        out.setdefault("url", note.url)
    if note.icon is not None:
        out.setdefault("icon", note.icon)
    return out


def fcm_message(note: Notification) -> dict[str, Any]:
    """The FCM HTTP v1 ``message`` object, without its target."""
    message: dict[str, Any] = {"notification": {"title": note.title, "body": note.body}}
    data = fcm_data(note)
    if data:
        message["data"] = data
    webpush: dict[str, Any] = {}
    if note.icon:
        webpush["notification"] = {"icon": note.icon}
    # Web push only opens https links on click (FCM rejects other schemes there).
    if note.url and note.url.startswith("https://"):
        webpush["fcm_options"] = {"link": note.url}
    if webpush:
        message["webpush"] = webpush
    # Android has no icon-by-URL field (its `icon` names a drawable in the app, and
    # `image` is a large picture), so Android apps read `icon` from `data`.
    return message


def apns_payload(note: Notification) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "aps": {"alert": {"title": note.title, "body": note.body}, "sound": "default"},
    }
    if note.icon:
        # Lets a notification service extension fetch the image.
        payload["aps"]["mutable-content"] = 1
        payload["icon"] = note.icon
    if note.url:
        payload["url"] = note.url
    if note.data:
        payload["data"] = note.data
    return payload


def size_bytes(payload: dict[str, Any]) -> int:
    return len(_compact(payload).encode())


def oversized(note: Notification) -> list[tuple[str, int]]:
    """Platforms whose payload would exceed the 4,096-byte limit, with the size."""
    sizes = {"fcm": size_bytes(fcm_message(note)), "apns": size_bytes(apns_payload(note))}
    return [(name, size) for name, size in sizes.items() if size > MAX_PAYLOAD_BYTES]
