"""FCM HTTP v1 through firebase-admin's ``messaging.send_each_async``.

One ``FcmSender`` per account per worker process: it owns a firebase-admin App
whose OAuth2 access token is cached by google-auth and reused until it nears
expiry, and an HTTP/2 client kept open across tasks on the process's one loop.

Two deliberate departures from firebase-admin's defaults, both through its
(pinned) internals, because the public API offers no knob:
- its async client retries 500/503 itself for about 7 s; ours does not, so that
  only the tokens that failed are retried, on our schedule and budget;
- the endpoint and the TLS trust can point at a simulator or a test fake.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import firebase_admin
import httpx
from firebase_admin import _http_client, credentials, exceptions, messaging
from firebase_admin._retry import HttpxRetry, HttpxRetryTransport

from worker.codes import Code
from worker.errors import (
    AccountError,
    DeliveryError,
    InvalidTokenError,
    PermanentError,
    RetryableError,
)
from worker.models import FcmConfig
from worker.models.push_payload import (
    FID_RE,
    Notification,
    apns_headers,
    aps_options,
    fcm_data,
)
from worker.providers.push import DeviceResult, Notes, note_at
from worker.providers.retry_after import parse_retry_after

MAX_BATCH = 500  # send_each_async's limit per call
# QUOTA_EXCEEDED without Retry-After: FCM asks for at least a minute.
QUOTA_DEFAULT_RETRY_S = 60.0
_NO_RETRY = HttpxRetry(max_retries=0, status_forcelist=[])
_app_names = itertools.count(1)


def classify(error: exceptions.FirebaseError) -> DeliveryError:
    """A firebase-admin exception → our error class (docs/providers.md)."""
    reason = str(error) or type(error).__name__
    response = getattr(error, "http_response", None)
    status = str(response.status_code) if response is not None else None
    if isinstance(error, messaging.UnregisteredError):
        return InvalidTokenError(reason, code=Code.TOKEN_UNREGISTERED, provider_code="UNREGISTERED")
    if isinstance(error, messaging.SenderIdMismatchError):
        return InvalidTokenError(
            reason, code=Code.TOKEN_SENDER_MISMATCH, provider_code="SENDER_ID_MISMATCH"
        )
    if isinstance(error, messaging.QuotaExceededError):
        header = response.headers.get("retry-after") if response is not None else None
        return RetryableError(
            reason,
            code=Code.RATE_LIMITED,
            provider_code="QUOTA_EXCEEDED",
            retry_after_s=parse_retry_after(header) or QUOTA_DEFAULT_RETRY_S,
        )
    if isinstance(error, messaging.ThirdPartyAuthError):
        return AccountError(
            reason, code=Code.CHANNEL_AUTH_FAILED, provider_code="THIRD_PARTY_AUTH_ERROR"
        )
    if isinstance(error, exceptions.InvalidArgumentError):
        text = reason.lower()
        # FCM judged the token itself: it is dead. A complaint about the target's *field*
        # (an installation id in `fid`, a token where an FID belongs) is our request's
        # fault, and the device may be fine: never prune for that.
        if "registration token" in text and "fid" not in text and "installation" not in text:
            return InvalidTokenError(
                reason, code=Code.TOKEN_INVALID, provider_code="INVALID_ARGUMENT"
            )
        # The payload is at fault, not the device: never prune for this.
        return PermanentError(reason, code=Code.INVALID_PAYLOAD, provider_code="INVALID_ARGUMENT")
    if isinstance(error, exceptions.UnauthenticatedError | exceptions.PermissionDeniedError):
        return AccountError(reason, code=Code.CHANNEL_AUTH_FAILED, provider_code=status)
    if isinstance(error, exceptions.NotFoundError):
        # 404 without an FCM error code: the project (not the token) is unknown.
        return AccountError(reason, code=Code.CHANNEL_AUTH_FAILED, provider_code=status)
    if isinstance(
        error,
        exceptions.UnavailableError
        | exceptions.InternalError
        | exceptions.DeadlineExceededError
        | exceptions.ResourceExhaustedError
        | exceptions.UnknownError,
    ):
        header = response.headers.get("retry-after") if response is not None else None
        code = (
            Code.PROVIDER_TIMEOUT
            if isinstance(error, exceptions.DeadlineExceededError)
            else Code.PROVIDER_UNAVAILABLE
        )
        return RetryableError(
            reason, code=code, provider_code=status, retry_after_s=parse_retry_after(header)
        )
    return PermanentError(reason, code=Code.PROVIDER_ERROR, provider_code=status)


class _HttpClient(_http_client.HttpxAsyncClient):  # type: ignore[misc]
    """firebase-admin's async client, built with our TLS trust and without its retries."""

    def __init__(
        self, credential: object, timeout_s: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        self._base_url = ""
        self._timeout = timeout_s
        self._headers = dict(_http_client.METRICS_HEADERS)
        self._retry_config = _NO_RETRY
        verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        transport = HttpxRetryTransport(retry=_NO_RETRY, http2=True, verify=verify)
        self._mounts = {"http://": transport, "https://": transport}
        self._async_client = httpx.AsyncClient(
            http2=True,
            timeout=timeout_s,
            headers=self._headers,
            auth=_http_client.GoogleAuthCredentialFlow(credential),
            mounts=self._mounts,
        )


def _webpush(note: Notification) -> messaging.WebpushConfig | None:
    link = note.url if note.url and note.url.startswith("https://") else None
    headers: dict[str, str] = {}
    if note.priority:
        headers["Urgency"] = note.priority  # RFC 8030: very-low, low, normal, high
    if note.ttl_s is not None:
        headers["TTL"] = str(note.ttl_s)
    if not (note.icon or link or note.collapse_id or headers):
        return None
    return messaging.WebpushConfig(
        headers=headers or None,
        notification=messaging.WebpushNotification(icon=note.icon, tag=note.collapse_id)
        if note.icon or note.collapse_id
        else None,
        fcm_options=messaging.WebpushFCMOptions(link=link) if link else None,
    )


def _android(note: Notification) -> messaging.AndroidConfig | None:
    if not (note.collapse_id or note.priority or note.ttl_s is not None or note.sound):
        return None
    notification = None
    if note.collapse_id or note.sound:
        notification = messaging.AndroidNotification(tag=note.collapse_id, sound=note.sound)
    return messaging.AndroidConfig(
        collapse_key=note.collapse_id,
        priority=note.priority,
        # firebase-admin writes a timedelta as proto3's "<seconds>s"; 0 is kept ("now or
        # never"), a None leaves FCM's default of 4 weeks.
        ttl=timedelta(seconds=note.ttl_s) if note.ttl_s is not None else None,
        notification=notification,
    )


def _apns(note: Notification, now: float) -> messaging.APNSConfig | None:
    headers = apns_headers(note, now)
    aps = aps_options(note)
    if not (headers or aps):
        return None
    payload = None
    if aps:
        # Only what the options set: FCM adds the notification's title and body as the
        # alert. firebase-admin drops a None field (and keeps a badge of 0).
        payload = messaging.APNSPayload(
            aps=messaging.Aps(
                badge=note.badge,
                sound=note.sound or None,
                thread_id=note.thread_id or None,
                mutable_content=True if note.image else None,
            )
        )
    return messaging.APNSConfig(headers=headers or None, payload=payload)


def _message(note: Notification, token: str, now: float | None = None) -> messaging.Message:
    """What ``push_payload.fcm_message(note, now)`` describes, as firebase-admin builds it
    (``now``: when apns-expiration counts from; the current time if None)."""
    now = time.time() if now is None else now
    fields: dict[str, Any] = {
        "notification": messaging.Notification(
            title=note.title, body=note.body, image=note.image or None
        ),
        "data": fcm_data(note) or None,
        "webpush": _webpush(note),
        "android": _android(note),
        "apns": _apns(note, now),
    }
    if FID_RE.fullmatch(token):
        return messaging.Message(fid=token, **fields)
    # A registration token (what an app's getToken() returns, `<FID>:APA91b…`) goes in
    # `token`. firebase-admin 7 calls that field deprecated in favour of `fid`, but `fid`
    # only takes a Firebase installation id: a registration token sent there is refused.
    # Its constructor warns about `token`; set after it, the field is encoded just the
    # same (tests/unit/test_fcm_senders.py), without a catch_warnings() per message, which
    # cost ~1 % of a campaign's CPU.
    message = messaging.Message(**fields)
    message.token = token
    return message


class FcmSender:
    """``batch_size``: messages per ``send_each_async`` call; the sender's calls go one
    after another, those of sends made at once too (a push job sends several slices at a
    time). Each message is a stream of one HTTP/2 connection, and h2's bookkeeping per
    stream grows with the streams open: with 2 calls of 50 in flight a process sent
    ~1,800 messages/s at ~820 µs of CPU each, with 2 of 200 ~1,550/s at ~950 µs (raw
    firebase-admin loops against the simulator, docs/performance.md); with two slices'
    calls at once, a campaign's worker spent ~990 µs a message instead of ~900."""

    def __init__(self, config: FcmConfig, *, timeout_s: float, batch_size: int = 50) -> None:
        self.batch_size = min(batch_size, MAX_BATCH)
        info = json.loads(config.service_account.get_secret_value())
        self.project_id = config.project_id
        self.app = firebase_admin.initialize_app(
            credentials.Certificate(info),
            options={"projectId": config.project_id, "httpTimeout": timeout_s},
            name=f"dispatch-{config.project_id}-{next(_app_names)}",
        )
        service = messaging._get_messaging_service(self.app)
        if config.endpoint:
            service._fcm_url = (
                f"{config.endpoint.rstrip('/')}/v1/projects/{config.project_id}/messages:send"
            )
        ssl_context = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else None
        service._async_client = _HttpClient(service._credential, timeout_s, ssl_context)
        self._service = service
        self._one_call = asyncio.Lock()

    async def send(self, note: Notes, tokens: Sequence[str]) -> list[DeviceResult]:
        results: list[DeviceResult] = []
        for start in range(0, len(tokens), self.batch_size):
            chunk = tokens[start : start + self.batch_size]
            now = time.time()
            messages = [
                _message(note_at(note, start + i), token, now) for i, token in enumerate(chunk)
            ]
            async with self._one_call:
                started = time.perf_counter()
                batch = await messaging.send_each_async(messages, app=self.app)
                latency_ms = (time.perf_counter() - started) * 1000
            for token, response in zip(chunk, batch.responses, strict=True):
                error = None if response.success else classify(response.exception)
                results.append(DeviceResult("fcm", token, response.message_id, error, latency_ms))
        return results

    async def close(self) -> None:
        await self._service._async_client.aclose()
        # delete_app closes the service with asyncio.run(), which cannot run inside our
        # loop: do it on a thread (the client is already closed, so that is a no-op).
        await asyncio.to_thread(firebase_admin.delete_app, self.app)
