"""One event to one endpoint: the body, the Standard Webhooks signature a receiver's
library verifies, and what an attempt leaves a delivery as on the retry schedule."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from worker.delivery.webhooks import (
    DeliveryAttempt,
    _judge,
    event_body,
    event_id_for,
    signed_headers,
)
from worker.models.webhooks import Delivery, DeliveryStatus
from worker.store.webhooks import new_secret

WAITS = (5.0, 300.0, 1800.0)


def _delivery(attempts: int = 0) -> Delivery:
    return Delivery(
        id="wh_x.1-0.0",
        endpoint_id="wh_x",
        event_id="evt_1_0_0",
        type="message.sent",
        created_at=1.0,
        attempts=attempts,
    )


def test_the_body_and_its_signature_verify_with_the_library() -> None:
    secret = new_secret()
    now = time.time()
    body = event_body("evt_1", "message.sent", now, {"message_id": "msg_1", "note": "café"})
    headers = signed_headers(secret, "evt_1", now, body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    event = json.loads(body)
    assert set(event) == {"id", "type", "timestamp", "data"}
    assert event["timestamp"].endswith("Z")
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"msg_1", b"msg_2"), headers)


def test_an_event_id_is_stable_per_entry_and_place() -> None:
    assert event_id_for("1700000000000-3", 2) == "evt_1700000000000_3_2"
    assert event_id_for("1700000000000-3", 2) == event_id_for("1700000000000-3", 2)


def test_the_retry_schedule() -> None:
    ok = _judge(_delivery(), DeliveryAttempt(True, 204, 3.0, None), 100.0, WAITS)
    assert ok.status is DeliveryStatus.DELIVERED
    assert ok.next_attempt_at is None
    down = DeliveryAttempt(False, 503, 3.0, "the endpoint answered 503")
    for attempts, wait in enumerate(WAITS):
        later = _judge(_delivery(attempts), down, 100.0, WAITS)
        assert later.status is DeliveryStatus.RETRYING
        assert later.next_attempt_at == 100.0 + wait
    spent = _judge(_delivery(len(WAITS)), down, 100.0, WAITS)
    assert spent.status is DeliveryStatus.FAILED
    assert spent.next_attempt_at is None
    assert spent.error == "the endpoint answered 503"


def test_a_url_no_longer_allowed_fails_at_once() -> None:
    refused = DeliveryAttempt(False, None, 0.0, "resolves to a private address", permanent=True)
    assert _judge(_delivery(), refused, 1.0, WAITS).status is DeliveryStatus.FAILED
