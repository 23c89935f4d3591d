"""How one push notification (the spec's title/message/url/icon/data) looks on each platform.

Pure functions, shared by the API (the 4,096-byte check happens before anything
is enqueued) and the provider adapters (which send exactly these shapes).

``data``, one rule on both platforms: FCM only takes strings as data values, so every
value reaches the app as a string on Android, web *and* iOS. A string is sent as is;
any other JSON value (number, boolean, object, array) as its compact JSON text, so
``3`` becomes ``"3"``, ``true`` becomes ``"true"`` and ``{"a": 1}`` becomes
``'{"a":1}'``; a null value is left out. FCM refuses some keys for every device
(``from``, ``message_type``, and any key starting with ``google`` or ``gcm``): the API
refuses them with a 400 naming the key (``reserved_data_key``). ``url`` and ``icon``
are also put in FCM's ``data`` (unless ``data`` already has those keys) so an app's own
handler can read them on every platform.

Sizes are counted on the bytes each library puts on the wire: FCM's payload as compact
JSON (what FCM limits), APNs's body as aioapns encodes it (``json.dumps`` with
``ensure_ascii=False`` and the default ``", "``/``": "`` separators, which make it
larger than compact JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

MAX_PAYLOAD_BYTES = 4096
# The longest collapse id a message gets when its sender gave none: its own id (a
# campaign batch's, ``cmp_<26>_<page>``, is the longest).
DEFAULT_COLLAPSE_ID_MAX = 40
PLATFORM_NAMES = {"fcm": "FCM", "apns": "APNs"}
# A Firebase installation id (FID): 22 characters of URL-safe base64. An FCM registration
# token (`<FID>:APA91b…`, ~150+ characters) is anything longer of the same alphabet.
FID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
FCM_TOKEN_RE = re.compile(r"^[A-Za-z0-9_:-]{20,4096}$")
_RESERVED_EXACT = {"from", "message_type"}
_RESERVED_PREFIXES = ("google", "gcm")


def reserved_data_key(key: str) -> bool:
    """FCM refuses these as data keys (for every device of the request)."""
    lowered = key.lower()
    return lowered in _RESERVED_EXACT or lowered.startswith(_RESERVED_PREFIXES)


@dataclass(frozen=True)
class Notification:
    title: str
    body: str
    url: str | None = None
    icon: str | None = None
    data: dict[str, Any] | None = None
    # What the device replaces a shown notification by (see ``fcm_message``); a job sent
    # again after a crash carries the same one, so the device shows it once.
    collapse_id: str | None = None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def data_strings(data: dict[str, Any] | None) -> dict[str, str]:
    """The caller's ``data`` as both platforms carry it: string values (see above)."""
    out: dict[str, str] = {}
    for key, value in (data or {}).items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, str) else _compact(value)
    return out


def fcm_data(note: Notification) -> dict[str, str]:
    out = data_strings(note.data)
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
    if note.collapse_id:
        # Android: `tag` replaces the notification shown with the same tag, `collapse_key`
        # the one still waiting at FCM for an offline device. The web: the notification's
        # `tag` replaces the one shown. Apple devices reached through FCM: the APNs header.
        message["android"] = {
            "collapse_key": note.collapse_id,
            "notification": {"tag": note.collapse_id},
        }
        webpush.setdefault("notification", {})["tag"] = note.collapse_id
        message["apns"] = {"headers": {"apns-collapse-id": note.collapse_id}}
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
    data = data_strings(note.data)
    if data:
        payload["data"] = data
    return payload


def size_bytes(payload: dict[str, Any]) -> int:
    """FCM's measure: the message's payload as compact JSON."""
    return len(_compact(payload).encode())


def apns_wire_bytes(payload: dict[str, Any]) -> bytes:
    """The body aioapns sends for ``payload``, byte for byte (its own encoding)."""
    return json.dumps(payload, ensure_ascii=False).encode()


def _measured(note: Notification) -> Notification:
    """Without a collapse id of its own, a note is measured with the longest we give."""
    if note.collapse_id is None:
        return replace(note, collapse_id="x" * DEFAULT_COLLAPSE_ID_MAX)
    return note


def payload_sizes(note: Notification) -> dict[str, int]:
    """The payload's size on every platform, for a check made where the platforms are
    known (the push send script, which reads the contact's devices)."""
    note = _measured(note)
    return {
        "fcm": size_bytes(fcm_message(note)),
        "apns": len(apns_wire_bytes(apns_payload(note))),
    }


def oversized(
    note: Notification, platforms: Iterable[str] = PLATFORM_NAMES
) -> list[tuple[str, int]]:
    """Those of ``platforms`` whose payload would exceed the 4,096-byte limit, with the
    size (only those platforms measured)."""
    note = _measured(note)
    measure = {
        "fcm": lambda: size_bytes(fcm_message(note)),
        "apns": lambda: len(apns_wire_bytes(apns_payload(note))),
    }
    sizes = {name: measure[name]() for name in platforms}
    return [(name, size) for name, size in sizes.items() if size > MAX_PAYLOAD_BYTES]
