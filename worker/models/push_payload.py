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

Delivery options (the caller's, the same on every attempt and every device of a
message), each mapped to each platform's own field:

============  ===============================  ==============================  ================
option        FCM: Android                     APNs (direct, and FCM's apns)   FCM: web push
============  ===============================  ==============================  ================
priority      android.priority high/normal     apns-priority 10/5              Urgency header
ttl_s         android.ttl "<n>s"               apns-expiration now + n (0: 0)  TTL header
badge         —                                aps.badge                       —
sound         android.notification.sound       aps.sound ("default" direct)    —
thread_id     —                                aps.thread-id                   —
image         notification.image (all three)   mutable-content 1 (+ ``image``  notification.image
                                               at the top level, direct)
============  ===============================  ==============================  ================

An option not given is not sent (the platform's default applies), so a push without
options is byte for byte what it was before options existed.

Sizes are counted on the bytes each library puts on the wire: FCM's payload as compact
JSON (what FCM limits), APNs's body as aioapns encodes it (``json.dumps`` with
``ensure_ascii=False`` and the default ``", "``/``": "`` separators, which make it
larger than compact JSON). Every option is counted where it goes (FCM: the whole
message; APNs: the body — its headers are not part of Apple's limit).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

MAX_PAYLOAD_BYTES = 4096
# The longest collapse id a message gets when its sender gave none: its own id (a
# campaign batch's, ``cmp_<26>_<page>``, is the longest).
DEFAULT_COLLAPSE_ID_MAX = 40
PLATFORM_NAMES = {"fcm": "FCM", "apns": "APNs"}
# A Firebase installation id (FID): 22 characters of URL-safe base64. An FCM registration
# token (`<FID>:APA91b…`, ~150+ characters) is anything longer of the same alphabet.
FID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
FCM_TOKEN_RE = re.compile(r"^[A-Za-z0-9_:-]{20,4096}$")
# FCM keeps a message for an offline device at most 4 weeks (its default too); APNs takes
# any future expiration, so this bounds ``ttl_s`` for both.
MAX_TTL_S = 2_419_200
Priority = Literal["high", "normal"]
# apns-priority: 10 sends now (an alert, a sound or a badge); 5 lets the device's power
# state decide (Apple refuses 10 for a background push, which needs 5).
APNS_PRIORITY: dict[str, int] = {"high": 10, "normal": 5}
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
    # Delivery options (the table above); None: not sent, the platform's default.
    priority: Priority | None = None
    ttl_s: int | None = None
    badge: int | None = None
    sound: str | None = None
    thread_id: str | None = None
    image: str | None = None


_FIELDS = frozenset(f.name for f in fields(Notification))


def with_texts(note: Notification, texts: Mapping[str, Any]) -> Notification:
    """``dataclasses.replace(note, **texts)``, for a campaign's texts rendered for each
    contact: it runs once per device, and ``replace`` (a frozen dataclass's ``__init__``
    sets each of its twelve fields through ``object.__setattr__``) cost ~3 µs of the
    ~200 µs a campaign's send costs; this costs ~0.6 µs. An unknown name is refused as
    ``replace`` refuses it."""
    if not texts.keys() <= _FIELDS:
        raise TypeError(f"not fields of a notification: {sorted(texts.keys() - _FIELDS)}")
    new = object.__new__(Notification)
    new.__dict__.update(note.__dict__)
    new.__dict__.update(texts)
    return new


def apns_expiration(ttl_s: int, now: float) -> int:
    """``apns-expiration`` for a time to live: 0 stays 0 (Apple: deliver once and never
    store it), anything else is that many seconds from ``now``, as a UNIX time."""
    return 0 if ttl_s == 0 else int(now) + ttl_s


def apns_headers(note: Notification, now: float) -> dict[str, str]:
    """The apns-* headers the note's options set (FCM's ``apns.headers``; aioapns writes the
    same ones from its request's fields)."""
    headers: dict[str, str] = {}
    if note.collapse_id:
        headers["apns-collapse-id"] = note.collapse_id
    if note.priority:
        headers["apns-priority"] = str(APNS_PRIORITY[note.priority])
    if note.ttl_s is not None:
        headers["apns-expiration"] = str(apns_expiration(note.ttl_s, now))
    return headers


def aps_options(note: Notification) -> dict[str, Any]:
    """What the options add to ``aps`` (a direct APNs body, FCM's ``apns.payload``)."""
    aps: dict[str, Any] = {}
    if note.badge is not None:
        aps["badge"] = note.badge
    if note.sound:
        aps["sound"] = note.sound
    if note.thread_id:
        aps["thread-id"] = note.thread_id
    if note.image:
        # The app's notification service extension downloads the image (FCM's extension
        # helper reads FCM's copy of it; a direct push's extension reads ``image``).
        aps["mutable-content"] = 1
    return aps


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


def fcm_message(note: Notification, now: float | None = None) -> dict[str, Any]:
    """The FCM HTTP v1 ``message`` object, without its target, as firebase-admin encodes
    ``providers.fcm``'s message for it (``now``: the time apns-expiration counts from)."""
    notification = {"title": note.title, "body": note.body}
    if note.image:
        # One image for Android, Apple devices (through their service extension) and the
        # web; each platform's own image field would only override it.
        notification["image"] = note.image
    message: dict[str, Any] = {"notification": notification}
    data = fcm_data(note)
    if data:
        message["data"] = data
    webpush: dict[str, Any] = {}
    if note.icon:
        webpush["notification"] = {"icon": note.icon}
    # Web push only opens https links on click (FCM rejects other schemes there).
    if note.url and note.url.startswith("https://"):
        webpush["fcm_options"] = {"link": note.url}
    android: dict[str, Any] = {}
    android_notification: dict[str, Any] = {}
    if note.collapse_id:
        # Android: `tag` replaces the notification shown with the same tag, `collapse_key`
        # the one still waiting at FCM for an offline device. The web: the notification's
        # `tag` replaces the one shown. Apple devices reached through FCM: the APNs header.
        android["collapse_key"] = note.collapse_id
        android_notification["tag"] = note.collapse_id
        webpush.setdefault("notification", {})["tag"] = note.collapse_id
    web_headers: dict[str, str] = {}
    if note.priority:
        android["priority"] = note.priority
        web_headers["Urgency"] = note.priority
    if note.ttl_s is not None:
        android["ttl"] = f"{note.ttl_s}s"
        web_headers["TTL"] = str(note.ttl_s)
    if note.sound:
        android_notification["sound"] = note.sound
    if android_notification:
        android["notification"] = android_notification
    if android:
        message["android"] = android
    apns: dict[str, Any] = {}
    headers = apns_headers(note, time.time() if now is None else now)
    if headers:
        apns["headers"] = headers
    aps = aps_options(note)
    if aps:
        # FCM puts the notification's title and body in `aps.alert` beside these.
        apns["payload"] = {"aps": aps}
    if apns:
        message["apns"] = apns
    if web_headers:
        webpush["headers"] = web_headers
    if webpush:
        message["webpush"] = webpush
    # Android has no icon-by-URL field (its `icon` names a drawable in the app, and
    # `image` is a large picture), so Android apps read `icon` from `data`.
    return message


def apns_payload(note: Notification) -> dict[str, Any]:
    """The body of a direct APNs request (its headers: ``apns_headers``)."""
    aps: dict[str, Any] = {"alert": {"title": note.title, "body": note.body}, "sound": "default"}
    aps.update(aps_options(note))
    payload: dict[str, Any] = {"aps": aps}
    if note.icon:
        # Lets a notification service extension fetch the image.
        aps["mutable-content"] = 1
        payload["icon"] = note.icon
    if note.image:
        # The service extension reads the picture to attach from here (docs/api.md).
        payload["image"] = note.image
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
