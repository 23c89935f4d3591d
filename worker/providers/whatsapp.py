"""WhatsApp Business Cloud API (Graph API over HTTPS + JSON, through httpx).

Every error code of docs/providers.md's table is classified in ``ERROR_CODES``; a code
not in the table falls back on the HTTP status (5xx and 429 retry, the rest is
permanent), so an unknown answer is never retried blindly.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from worker.codes import Code
from worker.errors import (
    AccountError,
    DeliveryError,
    PermanentError,
    RetryableError,
)
from worker.models import SendResult, Template, WhatsAppConfig
from worker.providers.retry_after import parse_retry_after

Kind = Literal["retry", "permanent", "account"]
# Meta's bound on biz_opaque_callback_data.
CALLBACK_DATA_MAX_CHARS = 512


@dataclass(frozen=True)
class ErrorClass:
    kind: Kind
    code: Code
    # A floor for the next attempt when the provider gives no Retry-After.
    min_retry_s: float | None = None


ERROR_CODES: dict[int, ErrorClass] = {
    # Throughput of the phone number: retry, and the rate limiter slows the number down.
    130429: ErrorClass("retry", Code.RATE_LIMITED, 1.0),
    # Pair rate (same recipient too often): about one message per 6 s is allowed.
    131056: ErrorClass("retry", Code.RECIPIENT_RATE_LIMITED, 6.0),
    4: ErrorClass("retry", Code.RATE_LIMITED, 1.0),
    80007: ErrorClass("retry", Code.RATE_LIMITED, 1.0),
    131000: ErrorClass("retry", Code.PROVIDER_UNAVAILABLE),
    131016: ErrorClass("retry", Code.PROVIDER_UNAVAILABLE),
    1: ErrorClass("retry", Code.PROVIDER_UNAVAILABLE),
    2: ErrorClass("retry", Code.PROVIDER_UNAVAILABLE),
    # Spam rate limit: the number must rest for a while.
    131048: ErrorClass("retry", Code.SPAM_RATE_LIMITED, 60.0),
    131047: ErrorClass("permanent", Code.REENGAGEMENT_WINDOW_CLOSED),
    132000: ErrorClass("permanent", Code.TEMPLATE_PARAMETER_MISMATCH),
    132001: ErrorClass("permanent", Code.TEMPLATE_NOT_FOUND),
    132015: ErrorClass("permanent", Code.TEMPLATE_PAUSED),
    132016: ErrorClass("permanent", Code.TEMPLATE_DISABLED),
    131026: ErrorClass("permanent", Code.RECIPIENT_UNDELIVERABLE),
    131050: ErrorClass("permanent", Code.RECIPIENT_OPTED_OUT),
    131049: ErrorClass("permanent", Code.ECOSYSTEM_LIMITED),
    190: ErrorClass("account", Code.CHANNEL_AUTH_FAILED),
    # The caller's input, refused by Meta (the API refuses what it can see first).
    132018: ErrorClass("permanent", Code.TEMPLATE_PARAMETER_INVALID),
    132005: ErrorClass("permanent", Code.TEMPLATE_BODY_TOO_LONG),
    131008: ErrorClass("permanent", Code.TEMPLATE_PARAMETER_INVALID),
    131009: ErrorClass("permanent", Code.TEMPLATE_PARAMETER_INVALID),
    # A request our adapter built wrong (a bug here, not the caller's input).
    100: ErrorClass("permanent", Code.INVALID_PROVIDER_REQUEST),
    368: ErrorClass("account", Code.ACCOUNT_RESTRICTED),
    131031: ErrorClass("account", Code.ACCOUNT_RESTRICTED),
}

# Codes 1 and 2 are only worth retrying when Meta says the failure is transient.
_TRANSIENT_ONLY = {1, 2}

_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def body_text(components: Sequence[dict[str, Any]]) -> str:
    """The text of the template's BODY component ("" if it has none)."""
    for component in components:
        if str(component.get("type", "")).upper() == "BODY":
            return str(component.get("text", ""))
    return ""


def count_body_parameters(components: Sequence[dict[str, Any]]) -> int:
    """The number of distinct ``{{n}}`` placeholders in the template's BODY."""
    return len(set(_PLACEHOLDER_RE.findall(body_text(components))))


def recipient(e164: str) -> str:
    # The Graph API takes the number without '+'.
    return e164.removeprefix("+")


def template_payload(
    to: str,
    name: str,
    language: str,
    parameters: Sequence[str],
    *,
    callback_data: str | None = None,
) -> dict[str, Any]:
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if parameters:
        template["components"] = [
            {"type": "body", "parameters": [{"type": "text", "text": p} for p in parameters]}
        ]
    payload = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient(to),
        "type": "template",
        "template": template,
    }
    return _with_callback_data(payload, callback_data)


def text_payload(to: str, body: str, *, callback_data: str | None = None) -> dict[str, Any]:
    payload = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient(to),
        "type": "text",
        "text": {"preview_url": False, "body": body},
    }
    return _with_callback_data(payload, callback_data)


def _with_callback_data(payload: dict[str, Any], callback_data: str | None) -> dict[str, Any]:
    """``biz_opaque_callback_data``: Meta echoes it in the message's status webhooks, so a
    send whose answer never came can be recognised when its "sent" report arrives (at most
    ``CALLBACK_DATA_MAX_CHARS``; our message ids are far shorter)."""
    if callback_data is not None:
        if len(callback_data) > CALLBACK_DATA_MAX_CHARS:
            raise ValueError("biz_opaque_callback_data is at most 512 characters")
        payload["biz_opaque_callback_data"] = callback_data
    return payload


def classify(status_code: int, body: Any, retry_after_header: str | None) -> DeliveryError:
    """Turn a non-2xx Graph API answer into the matching ``worker.errors`` class."""
    retry_after_s = parse_retry_after(retry_after_header)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), int):
        reason = f"WhatsApp answered HTTP {status_code} without an error body"
        if status_code >= 500 or status_code in (408, 429):
            return RetryableError(reason, retry_after_s=retry_after_s)
        return PermanentError(reason, code=Code.PROVIDER_ERROR, provider_code=str(status_code))

    code: int = error["code"]
    message = str(error.get("message") or "")
    details = ""
    if isinstance(error.get("error_data"), dict):
        details = str(error["error_data"].get("details") or "")
    reason = f"{message}: {details}" if details and details not in message else message
    reason = reason or f"WhatsApp error {code}"
    provider_code = str(code)

    known = ERROR_CODES.get(code)
    if known is not None and code in _TRANSIENT_ONLY and error.get("is_transient") is False:
        known = None
    if known is None:
        if status_code >= 500 or status_code == 429 or error.get("is_transient") is True:
            return RetryableError(reason, provider_code=provider_code, retry_after_s=retry_after_s)
        return PermanentError(reason, code=Code.PROVIDER_ERROR, provider_code=provider_code)
    if known.kind == "retry":
        floor = max(retry_after_s or 0.0, known.min_retry_s or 0.0)
        return RetryableError(
            reason, code=known.code, provider_code=provider_code, retry_after_s=floor or None
        )
    if known.kind == "account":
        return AccountError(reason, code=known.code, provider_code=provider_code)
    return PermanentError(reason, code=known.code, provider_code=provider_code)


class WhatsAppClient:
    """Graph API calls over one shared ``httpx.AsyncClient`` (one per worker process)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @staticmethod
    def _url(config: WhatsAppConfig, path: str) -> str:
        return f"{config.base_url.rstrip('/')}/{config.api_version}/{path}"

    @staticmethod
    def _auth(config: WhatsAppConfig) -> dict[str, str]:
        return {"Authorization": f"Bearer {config.access_token.get_secret_value()}"}

    async def send(self, config: WhatsAppConfig, payload: dict[str, Any]) -> SendResult:
        started = time.perf_counter()
        try:
            response = await self._http.post(
                self._url(config, f"{config.phone_number_id}/messages"),
                json=payload,
                headers=self._auth(config),
            )
        except httpx.TimeoutException as exc:
            raise RetryableError(
                f"WhatsApp did not answer in time ({type(exc).__name__})",
                code=Code.PROVIDER_TIMEOUT,
                maybe_delivered=isinstance(exc, httpx.ReadTimeout),
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableError(
                f"Could not reach WhatsApp ({type(exc).__name__})",
                code=Code.PROVIDER_UNREACHABLE,
                # The connection broke while the answer was awaited: the request was sent.
                maybe_delivered=isinstance(exc, httpx.ReadError),
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        body = _json_or_none(response)
        if response.status_code >= 300:
            raise classify(response.status_code, body, response.headers.get("retry-after"))
        try:
            wamid = str(body["messages"][0]["id"])
        except (TypeError, KeyError, IndexError):
            # Accepted but unreadable: retrying could send twice, so it is not retried.
            raise PermanentError(
                "WhatsApp accepted the request but returned no message id",
                code=Code.PROVIDER_ERROR,
            ) from None
        return SendResult(provider_message_id=wamid, latency_ms=latency_ms)

    async def templates(self, config: WhatsAppConfig) -> AsyncIterator[Template]:
        params: dict[str, str] = {
            "limit": "100",
            "fields": "name,language,status,category,components",
        }
        url = self._url(config, f"{config.waba_id}/message_templates")
        while True:
            try:
                response = await self._http.get(url, params=params, headers=self._auth(config))
            except httpx.TransportError as exc:
                raise RetryableError(
                    f"Could not reach WhatsApp ({type(exc).__name__})",
                    code=Code.PROVIDER_UNREACHABLE,
                ) from exc
            body = _json_or_none(response)
            if response.status_code >= 300:
                raise classify(response.status_code, body, response.headers.get("retry-after"))
            if not isinstance(body, dict):
                raise PermanentError(
                    "Unexpected template list from WhatsApp", code=Code.PROVIDER_ERROR
                )
            for item in body.get("data") or []:
                yield Template(
                    name=str(item["name"]),
                    language=str(item["language"]),
                    category=str(item.get("category") or ""),
                    status=str(item.get("status") or ""),
                    body_parameters=count_body_parameters(item.get("components") or []),
                    body_text=body_text(item.get("components") or []),
                )
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            # Follow the cursor against our own base URL rather than `paging.next`,
            # so the access token is never sent to a host we were not configured for.
            if not paging.get("next") or not after:
                return
            params = {**params, "after": str(after)}


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
