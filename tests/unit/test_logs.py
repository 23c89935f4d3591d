from __future__ import annotations

import json
import logging

from worker.observe.logs import JsonFormatter, TextFormatter, mask_text


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("worker.test", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_carries_the_fields_and_masks_what_slipped_through() -> None:
    token = "fXDtJ9kS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx7dPqnZ01"
    record = _record(
        "sent to %s with %s",
        "+919876543210",
        token,
        event="send.attempt",
        message_id="msg_01hx0000000000000000000000",
        account="acme",
        channel="whatsapp",
        latency_ms=12.5,
        token=token,
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "send.attempt"
    assert line["message_id"] == "msg_01hx0000000000000000000000"
    assert line["latency_ms"] == 12.5
    assert line["level"] == "info"
    assert "+919876543210" not in line["msg"]
    assert "+91******3210" in line["msg"]
    assert token not in json.dumps(line)


def test_text_lines_are_masked_too() -> None:
    text = TextFormatter().format(_record("key %s", "msk_" + "a" * 43))
    assert "a" * 43 not in text


def test_ids_and_ordinary_numbers_are_left_alone() -> None:
    text = "msg_01hx3k9y2qz5w8v7t6r4p3n2m1 sent 12345 devices in 250 ms"
    assert mask_text(text) == text
