"""Template sync: BODY placeholders counted, every page fetched, the token kept at home."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from worker.errors import AccountError
from worker.models import WhatsAppConfig
from worker.providers.whatsapp import WhatsAppClient, count_body_parameters

CONFIG = WhatsAppConfig.model_validate(
    {
        "phone_number_id": "1",
        "waba_id": "777",
        "access_token": "EAAtok",
        "base_url": "https://graph.test",
        "api_version": "v21.0",
    }
)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("Order {{1}} costs {{2}}", 2),
        ("No parameters", 0),
        ("{{1}} and {{ 1 }} again", 1),
        ("Hi {{first_name}}, code {{code}}", 2),
    ],
)
def test_body_placeholders_are_counted(text: str, count: int) -> None:
    components = [{"type": "HEADER", "text": "{{1}}"}, {"type": "BODY", "text": text}]
    assert count_body_parameters(components) == count


def test_every_page_is_fetched_through_our_own_base_url() -> None:
    seen: list[httpx.URL] = []

    def graph(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        after = request.url.params.get("after")
        if after is None:
            return httpx.Response(
                200,
                json={
                    "data": [
                        {
                            "name": "a",
                            "language": "en",
                            "status": "APPROVED",
                            "components": [{"type": "BODY", "text": "{{1}}"}],
                        }
                    ],
                    # A `next` pointing elsewhere must not receive our access token.
                    "paging": {"cursors": {"after": "CUR1"}, "next": "https://evil.test/next"},
                },
            )
        return httpx.Response(
            200,
            json={
                "data": [{"name": "b", "language": "pt_BR", "status": "PAUSED", "components": []}],
                "paging": {"cursors": {"after": "CUR2"}},
            },
        )

    async def fetch() -> list[tuple[str, str, str, int]]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(graph)) as http:
            return [
                (t.name, t.language, t.status, t.body_parameters)
                async for t in WhatsAppClient(http).templates(CONFIG)
            ]

    assert asyncio.run(fetch()) == [("a", "en", "APPROVED", 1), ("b", "pt_BR", "PAUSED", 0)]
    assert [u.host for u in seen] == ["graph.test", "graph.test"]
    assert seen[1].params["after"] == "CUR1"
    assert seen[0].path == "/v21.0/777/message_templates"


def test_a_bad_token_raises_an_account_error() -> None:
    def graph(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "Invalid OAuth", "code": 190}})

    async def fetch() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(graph)) as http:
            async for _ in WhatsAppClient(http).templates(CONFIG):
                pass

    with pytest.raises(AccountError):
        asyncio.run(fetch())
