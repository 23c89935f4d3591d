"""Push delivery options (priority, ttl_s, badge, sound, thread_id, image): what each one
becomes on every platform, read from what firebase-admin and aioapns themselves put on the
wire; the size check counting them; the message record carrying them to every attempt and
campaign device; and what the API accepts."""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from dataclasses import replace
from typing import Any

import pytest
from aioapns.common import NotificationRequest
from aioapns.connection import APNsBaseClientProtocol
from firebase_admin import messaging
from pydantic import ValidationError

from worker.delivery.push import notification
from worker.models import CampaignCreate, Channel, PushContent, PushSendRequest
from worker.models.push_payload import (
    MAX_PAYLOAD_BYTES,
    MAX_TTL_S,
    Notification,
    apns_payload,
    apns_wire_bytes,
    fcm_message,
    oversized,
    payload_sizes,
)
from worker.providers import apns, fcm
from worker.sim import apns_rules, fcm_rules
from worker.store import messages

NOW = 1_760_000_000.0
TOKEN = "fXDtJ9kS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx7dPqnZ01"
DEVICE = "a8b2cd3e" * 8
IMAGE = "https://cdn.example.com/p/42.jpg"
ALERT = {"alert": {"title": "Hi", "body": "There"}}


class Case:
    """One set of options and what each platform gets for it: the FCM message (without
    its target), the direct APNs request's option headers, and its body."""

    def __init__(
        self,
        options: dict[str, Any],
        fcm: dict[str, Any],
        apns_headers: dict[str, str],
        apns_body: dict[str, Any],
    ) -> None:
        self.options, self.fcm, self.apns_headers, self.apns_body = (
            options,
            fcm,
            apns_headers,
            apns_body,
        )


NOTE = {"notification": {"title": "Hi", "body": "There"}}
CASES: dict[str, Case] = {
    "none": Case({}, NOTE, {}, {"aps": {**ALERT, "sound": "default"}}),
    "priority high": Case(
        {"priority": "high"},
        {
            **NOTE,
            "android": {"priority": "high"},
            "apns": {"headers": {"apns-priority": "10"}},
            "webpush": {"headers": {"Urgency": "high"}},
        },
        {"apns-priority": "10"},
        {"aps": {**ALERT, "sound": "default"}},
    ),
    "priority normal": Case(
        {"priority": "normal"},
        {
            **NOTE,
            "android": {"priority": "normal"},
            "apns": {"headers": {"apns-priority": "5"}},
            "webpush": {"headers": {"Urgency": "normal"}},
        },
        {"apns-priority": "5"},
        {"aps": {**ALERT, "sound": "default"}},
    ),
    "ttl an hour": Case(
        {"ttl_s": 3600},
        {
            **NOTE,
            "android": {"ttl": "3600s"},
            "apns": {"headers": {"apns-expiration": str(int(NOW) + 3600)}},
            "webpush": {"headers": {"TTL": "3600"}},
        },
        {"apns-expiration": str(int(NOW) + 3600)},
        {"aps": {**ALERT, "sound": "default"}},
    ),
    "ttl 0: now or never": Case(
        {"ttl_s": 0},
        {
            **NOTE,
            "android": {"ttl": "0s"},
            "apns": {"headers": {"apns-expiration": "0"}},
            "webpush": {"headers": {"TTL": "0"}},
        },
        {"apns-expiration": "0"},
        {"aps": {**ALERT, "sound": "default"}},
    ),
    "ttl 4 weeks": Case(
        {"ttl_s": MAX_TTL_S},
        {
            **NOTE,
            "android": {"ttl": "2419200s"},
            "apns": {"headers": {"apns-expiration": str(int(NOW) + MAX_TTL_S)}},
            "webpush": {"headers": {"TTL": "2419200"}},
        },
        {"apns-expiration": str(int(NOW) + MAX_TTL_S)},
        {"aps": {**ALERT, "sound": "default"}},
    ),
    "badge 0 clears it": Case(
        {"badge": 0},
        {**NOTE, "apns": {"payload": {"aps": {"badge": 0}}}},
        {},
        {"aps": {**ALERT, "sound": "default", "badge": 0}},
    ),
    "badge": Case(
        {"badge": 12},
        {**NOTE, "apns": {"payload": {"aps": {"badge": 12}}}},
        {},
        {"aps": {**ALERT, "sound": "default", "badge": 12}},
    ),
    "sound": Case(
        {"sound": "chime.caf"},
        {
            **NOTE,
            "android": {"notification": {"sound": "chime.caf"}},
            "apns": {"payload": {"aps": {"sound": "chime.caf"}}},
        },
        {},
        {"aps": {**ALERT, "sound": "chime.caf"}},
    ),
    "thread": Case(
        {"thread_id": "order-42"},
        {**NOTE, "apns": {"payload": {"aps": {"thread-id": "order-42"}}}},
        {},
        {"aps": {**ALERT, "sound": "default", "thread-id": "order-42"}},
    ),
    "image": Case(
        {"image": IMAGE},
        {
            "notification": {"title": "Hi", "body": "There", "image": IMAGE},
            "apns": {"payload": {"aps": {"mutable-content": 1}}},
        },
        {},
        {"aps": {**ALERT, "sound": "default", "mutable-content": 1}, "image": IMAGE},
    ),
    "all of them, with a collapse id": Case(
        {
            "collapse_id": "order-42",
            "priority": "high",
            "ttl_s": 600,
            "badge": 3,
            "sound": "default",
            "thread_id": "orders",
            "image": IMAGE,
        },
        {
            "notification": {"title": "Hi", "body": "There", "image": IMAGE},
            "android": {
                "collapse_key": "order-42",
                "priority": "high",
                "ttl": "600s",
                "notification": {"tag": "order-42", "sound": "default"},
            },
            "apns": {
                "headers": {
                    "apns-collapse-id": "order-42",
                    "apns-priority": "10",
                    "apns-expiration": str(int(NOW) + 600),
                },
                "payload": {
                    "aps": {
                        "badge": 3,
                        "sound": "default",
                        "thread-id": "orders",
                        "mutable-content": 1,
                    }
                },
            },
            "webpush": {
                "headers": {"Urgency": "high", "TTL": "600"},
                "notification": {"tag": "order-42"},
            },
        },
        {
            "apns-collapse-id": "order-42",
            "apns-priority": "10",
            "apns-expiration": str(int(NOW) + 600),
        },
        {
            "aps": {
                **ALERT,
                "sound": "default",
                "badge": 3,
                "thread-id": "orders",
                "mutable-content": 1,
            },
            "image": IMAGE,
        },
    ),
}


def _note(options: dict[str, Any]) -> Notification:
    return Notification("Hi", "There", **options)


def _fcm_wire(note: Notification, token: str = TOKEN) -> dict[str, Any]:
    """The ``message`` firebase-admin posts for the adapter's message."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Message(token=…)
        built = fcm._message(note, token, NOW)
    encoded: dict[str, Any] = messaging._MessagingService.encode_message(built)
    return encoded


class _Connection:
    """Stands in for aioapns' h2 connection: keeps what it is asked to send."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body = b""
        self.sent = asyncio.Event()

    def send_headers(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.headers = dict(headers)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.body = data
        self.sent.set()


async def _apns_wire(request: NotificationRequest) -> tuple[dict[str, str], bytes]:
    """The headers and body aioapns' own ``send_notification`` writes for ``request``."""
    protocol = APNsBaseClientProtocol("com.example.app", asyncio.get_running_loop())
    connection = _Connection()
    protocol.conn = connection  # type: ignore[assignment]
    protocol.flush = lambda: None  # type: ignore[method-assign]
    sending = asyncio.create_task(protocol.send_notification(request))
    await asyncio.wait_for(connection.sent.wait(), 5)
    sending.cancel()
    return connection.headers, connection.body


_OPTION_HEADERS = ("apns-collapse-id", "apns-priority", "apns-expiration")


@pytest.mark.parametrize("name", list(CASES))
def test_fcm_gets_each_option_in_its_platforms_fields(name: str) -> None:
    case = CASES[name]
    note = _note(case.options)
    assert fcm_message(note, NOW) == case.fcm
    # The adapter sends exactly what the size check measures, and FCM's rules take it.
    wire = _fcm_wire(note)
    assert wire == {**case.fcm, "token": TOKEN}
    assert fcm_rules.check({"message": wire}) is None


@pytest.mark.parametrize("name", list(CASES))
def test_apns_gets_each_option_as_its_header_or_aps_key(name: str) -> None:
    case = CASES[name]
    note = _note(case.options)
    payload = apns_payload(note)
    assert payload == case.apns_body
    request = apns.notification_request(payload, DEVICE, note, NOW)
    headers, body = asyncio.run(_apns_wire(request))
    assert {k: v for k, v in headers.items() if k in _OPTION_HEADERS} == case.apns_headers
    assert body == apns_wire_bytes(payload)  # what the size check measures
    assert apns_rules.check_headers(headers, body) is None


def test_a_ttl_expires_from_the_send_and_zero_stays_zero() -> None:
    """aioapns writes int(time.time()) + time_to_live: the expiration we hand it is kept
    as is (0 is Apple's "deliver once, never store", not the current second)."""
    now = time.time()
    for ttl_s, expected in ((0, 0), (60, int(now) + 60)):
        request = apns.notification_request({}, DEVICE, _note({"ttl_s": ttl_s}), now)
        assert int(time.time()) + request.time_to_live == expected  # type: ignore[operator]


def test_the_size_check_counts_the_options_on_each_platform() -> None:
    plain = Notification("t", "b", data={"k": "x" * 3600})
    assert oversized(plain) == []
    dressed = replace(
        plain,
        image="https://cdn.example.com/" + "p" * 400,
        sound="s" * 100,
        thread_id="t" * 64,
        ttl_s=MAX_TTL_S,
        priority="normal",
        badge=99_999,
    )
    assert [name for name, _ in oversized(dressed)] == ["fcm", "apns"]
    sizes = payload_sizes(dressed)
    assert sizes["apns"] == len(apns_wire_bytes(apns_payload(dressed)))
    assert sizes["fcm"] > MAX_PAYLOAD_BYTES
    # FCM's is the whole message, its APNs headers included.
    assert sizes["fcm"] == len(
        json.dumps(fcm_message(replace(dressed, collapse_id="x" * 40)), separators=(",", ":"))
    )


def test_the_message_record_carries_the_options_to_every_attempt_and_campaign_device() -> None:
    options = {"priority": "normal", "ttl_s": 0, "badge": 0, "sound": "chime.caf",
               "thread_id": "orders", "image": IMAGE}  # fmt: skip
    message = messages.new("acme", Channel.PUSH, title="Hi", text="There", **options)
    stored = messages._decode(messages.encode(message))  # as Redis gives it back
    note = notification(stored)
    assert {name: getattr(note, name) for name in options} == options
    assert note.collapse_id == message.id
    # A campaign device's rendered texts replace the message's, the options stay.
    rendered = replace(note, **{"title": "Hi Ana", "body": "For you", "data": {"a": "1"}})
    assert (rendered.title, rendered.badge, rendered.ttl_s) == ("Hi Ana", 0, 0)
    assert rendered.collapse_id == message.id


BODY = {"contact_id": "c1", "title": "Hi", "message": "There"}
GOOD: list[dict[str, Any]] = [
    {"priority": "high"},
    {"priority": "normal"},
    {"ttl_s": 0},
    {"ttl_s": MAX_TTL_S},
    {"badge": 0},
    {"badge": 99_999},
    {"sound": "default"},
    {"sound": "s" * 256},
    {"thread_id": "t" * 64},
    {"image": "https://x.test/" + "i" * 2033},
    {"priority": None, "ttl_s": None, "badge": None, "sound": None, "thread_id": None},
]
BAD: list[tuple[str, Any]] = [
    ("priority", "urgent"),
    ("priority", "HIGH"),
    ("priority", 10),
    ("ttl_s", -1),
    ("ttl_s", MAX_TTL_S + 1),
    ("ttl_s", "60"),
    ("ttl_s", 1.5),
    ("ttl_s", 60.0),
    ("ttl_s", True),
    ("badge", -1),
    ("badge", 100_000),
    ("badge", "3"),
    ("badge", 2.0),
    ("badge", False),
    ("sound", ""),
    ("sound", "s" * 257),
    ("sound", "be\nll"),
    ("sound", 1),
    ("thread_id", ""),
    ("thread_id", "t" * 65),
    ("thread_id", "a\tb"),
    ("image", "http://x.test/i.png"),
    ("image", "x.test/i.png"),
    ("image", "https://"),
    ("image", "https://x.test/a b.png"),
    ("image", "https://x.test/" + "i" * 2034),
]


@pytest.mark.parametrize("options", GOOD)
def test_the_api_takes_each_option_up_to_its_bounds(options: dict[str, Any]) -> None:
    request = PushSendRequest.model_validate_json(json.dumps({**BODY, **options}))
    given = {k: v for k, v in options.items() if v is not None}
    assert request.push_options() == given
    content = PushContent.model_validate_json(json.dumps({"title": "t", "message": "m", **options}))
    assert content.push_options() == given


@pytest.mark.parametrize(("field", "value"), BAD)
def test_the_api_refuses_a_bad_option_naming_it(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        PushSendRequest.model_validate_json(json.dumps({**BODY, field: value}))
    [error] = raised.value.errors()
    assert error["loc"] == (field,)
    assert error["type"] in {
        "invalid_request",
        "literal_error",
        "int_type",
        "greater_than_equal",
        "less_than_equal",
        "string_too_short",
        "string_too_long",
        "string_type",
    }
    campaign = {
        "name": "n",
        "channel": "push",
        "content": {"title": "t", "message": "m", field: value},
        "audience": {"all": True},
    }
    with pytest.raises(ValidationError) as raised:
        CampaignCreate.model_validate_json(json.dumps(campaign))
    assert raised.value.errors()[0]["loc"][-1] == field
