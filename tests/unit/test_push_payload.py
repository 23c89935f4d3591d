"""How one notification maps onto FCM and APNs, and the 4,096-byte check."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from worker.models.push_payload import (
    DEFAULT_COLLAPSE_ID_MAX,
    MAX_PAYLOAD_BYTES,
    Notification,
    apns_payload,
    apns_wire_bytes,
    fcm_data,
    fcm_message,
    oversized,
    with_texts,
)


def test_fcm_data_values_are_strings() -> None:
    note = Notification(
        "t",
        "b",
        data={"n": 3, "f": 1.5, "yes": True, "obj": {"a": [1, 2]}, "s": "text", "none": None},
    )
    assert fcm_data(note) == {
        "n": "3",
        "f": "1.5",
        "yes": "true",
        "obj": '{"a":[1,2]}',
        "s": "text",
    }


def test_url_and_icon_go_into_data_unless_data_has_them() -> None:
    note = Notification(
        "t", "b", url="https://x.test/a", icon="https://x.test/i.png", data={"url": "app://own"}
    )
    assert fcm_data(note) == {"url": "app://own", "icon": "https://x.test/i.png"}


def test_web_link_only_for_https() -> None:
    assert fcm_message(Notification("t", "b", url="https://x.test/a"))["webpush"] == {
        "fcm_options": {"link": "https://x.test/a"}
    }
    assert "webpush" not in fcm_message(Notification("t", "b", url="myapp://orders/1"))


def test_apns_payload_carries_data_as_the_same_strings_as_fcm() -> None:
    """One rule on both platforms: an iOS app reads what an Android app reads."""
    note = Notification("t", "b", url="u://x", data={"n": 3, "obj": {"a": 1}, "none": None})
    assert apns_payload(note) == {
        "aps": {"alert": {"title": "t", "body": "b"}, "sound": "default"},
        "url": "u://x",
        "data": {"n": "3", "obj": '{"a":1}'},
    }
    assert {k: v for k, v in fcm_data(note).items() if k != "url"} == apns_payload(note)["data"]


def test_apns_size_is_what_aioapns_puts_on_the_wire() -> None:
    """aioapns encodes with ensure_ascii=False and ", "/": " separators: a payload just
    under 4,096 bytes as compact JSON is over it on the wire."""
    note = Notification("t", "b", data={f"k{i}": "é" for i in range(310)})
    payload = apns_payload(note)
    compact = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    wire = apns_wire_bytes(payload)
    assert wire == json.dumps(payload, ensure_ascii=False).encode()  # aioapns' own call
    assert compact <= MAX_PAYLOAD_BYTES < len(wire)
    assert [name for name, _ in oversized(note)] == ["apns"]


def test_oversized_names_each_platform_over_the_limit() -> None:
    assert oversized(Notification("t", "b", data={"k": "x" * 3000})) == []
    over = oversized(Notification("t", "b", data={"k": "x" * MAX_PAYLOAD_BYTES}))
    assert [name for name, _ in over] == ["fcm", "apns"]
    assert all(size > MAX_PAYLOAD_BYTES for _, size in over)


def test_a_collapse_id_reaches_android_the_web_and_apple_through_fcm() -> None:
    message = fcm_message(Notification("t", "b", collapse_id="msg_1"))
    assert message["android"] == {"collapse_key": "msg_1", "notification": {"tag": "msg_1"}}
    assert message["webpush"] == {"notification": {"tag": "msg_1"}}
    assert message["apns"] == {"headers": {"apns-collapse-id": "msg_1"}}
    assert "android" not in fcm_message(Notification("t", "b"))


def test_the_size_check_counts_the_collapse_id_we_would_add_and_only_given_platforms() -> None:
    """Without a collapse id of its own a note is measured with the longest we give (the
    message's id), so a send we accept is never refused for the id we add."""
    base = fcm_message(Notification("t", "b", collapse_id="x" * DEFAULT_COLLAPSE_ID_MAX))
    room = MAX_PAYLOAD_BYTES - len(json.dumps(base, separators=(",", ":")).encode())
    just_fits = Notification("t", "b", data={"k": "x" * (room - len('"data":{"k":""},'))})
    assert oversized(just_fits, ["fcm"]) == []
    over = Notification("t", "b", data={"k": "x" * (room - len('"data":{"k":""},') + 1)})
    assert [name for name, _ in oversized(over, ["fcm"])] == ["fcm"]
    assert oversized(over, ["apns"]) == []


def test_a_contacts_texts_replace_only_those_fields_and_unknown_names_are_refused() -> None:
    note = Notification("Hi {{name}}", "Body", collapse_id="cmp_1", ttl_s=60, data={"k": "v"})
    texts = {"title": "Hi Ada", "url": "https://example.com/a"}
    personal = with_texts(note, texts)
    assert personal == replace(note, **texts)
    assert (personal.title, personal.body, personal.url) == ("Hi Ada", "Body", texts["url"])
    assert note.title == "Hi {{name}}"  # the message's own note is untouched
    with pytest.raises(TypeError, match="colour"):
        with_texts(note, {"title": "x", "colour": "red"})
