"""One event to one endpoint: its body, its Standard Webhooks signature, the POST.

The body is ``{"id", "type", "timestamp", "data"}``; the headers are Standard Webhooks'
(``webhook-id`` = the event id, so a receiver can drop a repeat; ``webhook-timestamp`` in
Unix seconds; ``webhook-signature`` = ``v1,`` + base64 HMAC-SHA256 of
``id.timestamp.body`` under the endpoint's secret), signed by the ``standardwebhooks``
library a receiver verifies with. The POST goes through the guarded outbound client: no
private address, no redirect, one deadline, a bounded read of the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from worker.providers.outbound import OutboundClient, OutboundError

USER_AGENT = "multichannel-dispatch-webhooks/1"


def event_body(event_id: str, event_type: str, at: float, data: dict[str, Any]) -> bytes:
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"id": event_id, "type": event_type, "timestamp": stamp, "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def signed_headers(secret: str, event_id: str, at: float, body: bytes) -> dict[str, str]:
    sent_at = datetime.fromtimestamp(int(at), UTC)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": Webhook(secret).sign(event_id, sent_at, body.decode()),
    }


@dataclass(frozen=True)
class DeliveryAttempt:
    """What one POST came to: ``delivered`` on any 2xx answer."""

    delivered: bool
    status: int | None
    latency_ms: float
    error: str | None
    # A refusal the next attempt cannot change (the URL is not allowed any more).
    permanent: bool = False


async def post_event(
    outbound: OutboundClient, url: str, secret: str, event_id: str, at: float, body: bytes
) -> DeliveryAttempt:
    """POST one signed event; ``at`` is the signature's time (the attempt's, not the
    event's: a receiver refuses a timestamp more than five minutes off its clock)."""
    try:
        reply = await outbound.post(url, body, signed_headers(secret, event_id, at, body))
    except OutboundError as exc:
        return DeliveryAttempt(False, None, 0.0, exc.reason, permanent=not exc.retryable)
    ok = 200 <= reply.status < 300
    error = None if ok else f"the endpoint answered {reply.status}"
    return DeliveryAttempt(ok, reply.status, round(reply.elapsed_ms, 1), error)
