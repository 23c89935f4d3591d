"""The send routes answer the same with the fast path on (the default, the session's API)
and off (`DISPATCH_API_SEND_FAST_PATH=false`: every request through FastAPI): sends that
go through, every kind of refusal, both channels."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.conftest import APNS_TOKEN_1, FCM_TOKEN_1, SPEC_BODY, ApiFactory, PushTenant
from tests.integration.test_push_send import SPEC_PUSH

WHATSAPP = "/api/v1/channels/whatsapp/send"
PUSH = "/api/v1/channels/push/send"
# Fields that differ between two sends by nature: ids, times, latencies.
VARYING = {"id", "message_id", "created_at", "updated_at", "latency_ms", "at", "results"}


def _shape(response: httpx.Response) -> tuple[int, Any]:
    try:
        body = response.json()
    except ValueError:
        return response.status_code, response.text
    if isinstance(body, dict):
        body = {k: ("…" if k in VARYING else v) for k, v in body.items()}
    return response.status_code, body


@pytest.fixture
def slow_api(api_process: ApiFactory) -> str:
    return api_process(DISPATCH_API_SEND_FAST_PATH="false")


def test_both_paths_answer_alike(push_tenant: PushTenant, slow_api: str) -> None:
    assert push_tenant.register(
        "cct_abc123", ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1)
    ).is_success
    good = {"Authorization": f"Bearer {push_tenant.key}"}
    cases: list[tuple[str, dict[str, str], Any]] = [
        (WHATSAPP, good, SPEC_BODY),
        (WHATSAPP, good, {**SPEC_BODY, "to": "12"}),
        (WHATSAPP, good, {**SPEC_BODY, "parameters": [{"type": "text", "text": "a\nb"}]}),
        (WHATSAPP, good, b'{"to": "+1415'),
        (WHATSAPP, good, {**SPEC_BODY, "surprise": 1}),  # an unknown field is ignored
        (WHATSAPP, {"Authorization": "Bearer msk_nope"}, SPEC_BODY),
        (PUSH, good, SPEC_PUSH),
        (PUSH, good, {**SPEC_PUSH, "contact_id": "cct_nobody"}),
        (PUSH, good, {**SPEC_PUSH, "collapse_id": "has space"}),
        (PUSH, good, {**SPEC_PUSH, "data": {"from": "x"}}),
    ]
    for path, headers, body in cases:
        answers = []
        for base in (push_tenant.api_url, slow_api):
            if isinstance(body, bytes):
                sent = push_tenant.http.post(
                    f"{base}{path}",
                    content=body,
                    headers={**headers, "Content-Type": "application/json"},
                )
            else:
                sent = push_tenant.http.post(f"{base}{path}", json=body, headers=headers)
            answers.append(_shape(sent))
        fast, slow = answers
        assert fast == slow, (path, body)
    # Both sends of each accepted kind reached the providers (WhatsApp: the spec's body and
    # the one with an unknown field; push: the spec's body, to 2 devices).
    assert len(push_tenant.sim_requests()) == 4
    assert len(push_tenant.push_requests()) == 4
