"""Push end to end: API → Redis → Celery worker → firebase-admin / aioapns → simulator."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import APNS_TOKEN_1, FCM_TOKEN_1, PushTenant

SPEC_PUSH: dict[str, Any] = {
    "contact_id": "cct_abc123",
    "title": "Your order has shipped!",
    "message": "Order #ORD-98765 is on its way.",
    "url": "https://yourapp.com/orders/98765",
    "icon": "https://yourapp.com/icons/shipping.png",
}


def test_spec_push_example_reaches_both_devices(push_tenant: PushTenant) -> None:
    assert (
        push_tenant.register("cct_abc123", ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1)).status_code
        == 200
    )

    response = push_tenant.push(SPEC_PUSH)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["failed"] == 0, body["results"]
    assert {k: body[k] for k in ("success", "delivered", "failed", "device_count", "channel")} == {
        "success": True,
        "delivered": 2,
        "failed": 0,
        "device_count": 2,
        "channel": "push",
    }
    fcm, apns = push_tenant.push_requests("fcm"), push_tenant.push_requests("apns")
    assert len(fcm) == 1
    assert len(apns) == 1
    print(fcm[0]["body"], apns[0])
