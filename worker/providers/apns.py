"""APNs over HTTP/2 + TLS through aioapns, with token (.p8) authentication.

One ``ApnsSender`` per account per worker process keeps its connections open and
fixes what aioapns 4.0 leaves to the caller (docs/providers.md):
- one provider JWT per signing key for the whole deployment: shared by every connection
  and, through a ``ProviderTokenStore``, by every process; replaced on its own clock
  (40 minutes) or when Apple rejects *the current one* as expired — a wave of 403s on
  the streams in flight mints one token, not one per answer (aioapns mints one per
  connection; Apple answers TooManyProviderTokenUpdates to a key's new token within
  20 minutes of its last);
- finished streams are forgotten (aioapns keeps them in ``request_streams``);
- ALPN offers ``h2``; sends are bounded by a semaphore and each has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from functools import partial
from typing import Any, cast

import jwt
from aioapns.common import NotificationRequest, NotificationResult, PushType
from aioapns.connection import (
    APNsBaseClientProtocol,
    APNsKeyConnectionPool,
    APNsTLSClientProtocol,
    AuthorizationHeaderProvider,
)
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from aioapns.exceptions import MaxAttemptsExceeded

from worker.codes import Code
from worker.errors import (
    AccountError,
    DeliveryError,
    InvalidTokenError,
    PermanentError,
    RetryableError,
)
from worker.models import ApnsConfig
from worker.models.push_payload import (
    APNS_PRIORITY,
    Notification,
    apns_expiration,
    apns_payload,
)
from worker.providers.push import DeviceResult, Notes, ProviderTokenStore, note_at

PRODUCTION = ("api.push.apple.com", 443)
SANDBOX = ("api.development.push.apple.com", 443)
# Sends in flight per call (a slice): three slices at a time keep ~300 streams open.
LANES_PER_CALL = 100

log = logging.getLogger(__name__)

# (status, reason) → class; a reason not listed falls back on the status below.
_INVALID_TOKEN = {"Unregistered", "ExpiredToken", "BadDeviceToken", "DeviceTokenNotForTopic"}
EXPIRED_PROVIDER_TOKEN = "ExpiredProviderToken"  # noqa: S105 - an APNs reason


def classify(status: str, reason: str | None) -> DeliveryError:
    """An APNs status and reason → our error class (docs/providers.md)."""
    reason = reason or ""
    text = f"APNs {status} {reason}".strip()
    if reason in _INVALID_TOKEN:
        return InvalidTokenError(
            text,
            code=Code.TOKEN_UNREGISTERED if status == "410" else Code.TOKEN_INVALID,
            provider_code=reason,
        )
    if status == "403" and reason == EXPIRED_PROVIDER_TOKEN:
        # A new token fixes it (SharedJwt.rejected): the device is tried again with it.
        return RetryableError(
            text, code=Code.PROVIDER_TOKEN_REJECTED, provider_code=reason, retry_after_s=0.0
        )
    if status == "403":
        # InvalidProviderToken, MissingProviderToken, …: the key, key id or team id is
        # wrong; every send of the account would fail alike.
        return AccountError(text, code=Code.CHANNEL_AUTH_FAILED, provider_code=reason or status)
    if status == "429":
        return RetryableError(text, code=Code.RATE_LIMITED, provider_code=reason or status)
    if status.startswith("5"):
        return RetryableError(text, code=Code.PROVIDER_UNAVAILABLE, provider_code=reason or status)
    if status in ("400", "413"):
        return PermanentError(text, code=Code.INVALID_PAYLOAD, provider_code=reason or status)
    return PermanentError(text, code=Code.PROVIDER_ERROR, provider_code=reason or status)


class _Expiration(int):
    """An absolute ``apns-expiration`` handed to aioapns, which only takes a time to live
    and writes ``int(time.time()) + time_to_live``: that sum calls this int's ``__radd__``
    first (the right operand's type is a subclass of the left's), which answers the value
    itself. So a TTL of 0 goes out as Apple's ``0`` (deliver once, never store) rather than
    as the current second, and every device of a call gets the same expiration."""

    def __radd__(self, other: int) -> int:
        return int(self)


def notification_request(
    payload: dict[str, Any], token: str, note: Notification, now: float
) -> NotificationRequest:
    """aioapns' request for one device: ``payload`` (``apns_payload(note)``) and the
    headers of the note's collapse id and options (``now``: when the expiration counts
    from), the same as ``push_payload.apns_headers`` gives FCM."""
    return NotificationRequest(
        device_token=token,
        message=payload,
        notification_id=str(uuid.uuid4()),
        push_type=PushType.ALERT,
        # A device shows one notification per collapse id: a send repeated after a crash
        # replaces the first instead of appearing twice.
        collapse_key=note.collapse_id,
        # No apns-priority header unless the caller chose one: Apple's default is 10 (send
        # now), what an alert wants; one header less to compress costs ~1 % of a send's
        # CPU in hpack.
        priority=APNS_PRIORITY[note.priority] if note.priority else None,
        time_to_live=(
            None if note.ttl_s is None else _Expiration(apns_expiration(note.ttl_s, now))
        ),
    )


# The provider token the current task's request was sent with (aioapns reads the header
# inside the sending task, so the lane that awaits the answer sees its own).
_USED_TOKEN: ContextVar[str | None] = ContextVar("apns_used_token", default=None)


class SharedJwt(AuthorizationHeaderProvider):
    """The provider token every connection sends, shared through ``store`` by every
    process that signs with this key; reissued every ``ttl_s`` (Apple: 20-60 min)."""

    def __init__(
        self,
        key: str,
        key_id: str,
        team_id: str,
        *,
        store: ProviderTokenStore | None = None,
        ttl_s: float = 40 * 60,
        recheck_s: float = 30.0,
    ) -> None:
        self._key, self._key_id, self._team_id = key, key_id, team_id
        self._store, self._ttl_s, self._recheck_s = store, ttl_s, recheck_s
        self._token: str | None = None
        self._issued_at = 0.0
        self._checked_at = 0.0
        self._rejected: str | None = None
        self.minted = 0

    @property
    def name(self) -> str:
        return f"{self._team_id}.{self._key_id}"

    def _mint(self) -> tuple[str, float]:
        now = time.time()
        token = jwt.encode(
            {"iss": self._team_id, "iat": int(now)},
            self._key,
            algorithm="ES256",
            headers={"kid": self._key_id},
        )
        self.minted += 1
        return token, float(int(now))

    def _usable(self, token: str | None, issued_at: float, now: float) -> bool:
        return token is not None and token != self._rejected and now - issued_at < self._ttl_s

    async def refresh(self) -> None:
        """Before a batch: adopt the shared token, or replace it when it is due or was
        rejected (once for the whole deployment: compare-and-swap in the store)."""
        now = time.time()
        if (
            self._usable(self._token, self._issued_at, now)
            and now - self._checked_at < self._recheck_s
        ):
            return
        if self._store is None:
            if not self._usable(self._token, self._issued_at, now):
                self._token, self._issued_at = self._mint()
            self._checked_at = now
            return
        stored = await self._store.load(self.name)
        if stored is None or not self._usable(*stored, now):
            token, issued_at = self._mint()
            stored = await self._store.replace(
                self.name, stored[0] if stored else None, token, issued_at
            )
        self._token, self._issued_at = stored
        self._checked_at = now

    def get_header(self) -> str:
        if self._token is None:  # a sender used without refresh(): a token of its own
            self._token, self._issued_at = self._mint()
        _USED_TOKEN.set(self._token)
        return f"bearer {self._token}"

    def rejected(self, token: str | None) -> None:
        """Apple answered ExpiredProviderToken to a request sent with ``token``: replace it
        if it is still the current one (the other streams in flight with it say the
        same, and a token already replaced needs nothing)."""
        if token is not None and token == self._token:
            self._rejected = token
            self._checked_at = 0.0


class _Protocol(APNsTLSClientProtocol):
    """aioapns' protocol, made safe for requests we stopped waiting for (timeouts)."""

    def on_stream_ended(self, stream_id: int) -> None:
        # aioapns forgets a successful stream's id only on error responses.
        self.request_streams.pop(stream_id, None)
        super().on_stream_ended(stream_id)

    def on_response_received(self, headers: dict[bytes, bytes]) -> None:
        notification_id = headers.get(b"apns-id", b"").decode()
        status = headers.get(b":status", b"").decode()
        if status != "200":
            self.request_statuses[notification_id] = status
            return
        future = self.requests.pop(notification_id, None)
        # A request that timed out on our side has a cancelled future: drop the answer.
        if future is not None and not future.done():
            future.set_result(NotificationResult(notification_id, status))

    def on_data_received(self, raw_data: bytes, stream_id: int) -> None:
        try:
            data = json.loads(raw_data.decode())
        except ValueError:
            data = {}
        notification_id = self.request_streams.pop(stream_id, None)
        if notification_id is None:
            return
        status = self.request_statuses.pop(notification_id, "")
        future = self.requests.pop(notification_id, None)
        if future is not None and not future.done():
            future.set_result(
                NotificationResult(
                    notification_id,
                    status,
                    description=data.get("reason"),
                    timestamp=data.get("timestamp"),
                )
            )


class _Pool(APNsKeyConnectionPool):
    def __init__(
        self, auth: SharedJwt, protocol_class: type[_Protocol], topic: str, **kwargs: Any
    ) -> None:
        super().__init__(topic=topic, **kwargs)
        self.protocol_class = protocol_class
        self._auth = auth
        self._topic = topic

    async def create_connection(self) -> APNsBaseClientProtocol:
        factory = partial(
            self.protocol_class,
            self._topic,
            self.loop,
            cast(Any, self.discard_connection),  # annotated NoReturn in aioapns; returns None
            self._auth,
        )
        return await self._create_connection(factory)


class ApnsSender:
    """Must be created inside the running event loop (aioapns binds to it)."""

    def __init__(
        self,
        config: ApnsConfig,
        *,
        timeout_s: float,
        max_in_flight: int = 500,
        max_connections: int = 2,
        token_store: ProviderTokenStore | None = None,
    ) -> None:
        host, port = SANDBOX if config.sandbox else PRODUCTION
        if config.endpoint:
            host, _, port_text = config.endpoint.rpartition(":")
            port = int(port_text)
        protocol_class = type(
            "ApnsProtocol", (_Protocol,), {"APNS_SERVER": host, "APNS_PORT": port}
        )
        ssl_context = ssl.create_default_context(cafile=config.ca_file)
        ssl_context.set_alpn_protocols(["h2"])
        self.auth = SharedJwt(
            config.key.get_secret_value(), config.key_id, config.team_id, store=token_store
        )
        self.topic = config.topic
        self._timeout_s = timeout_s
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._pool = _Pool(
            self.auth,
            protocol_class,
            key=config.key.get_secret_value(),
            key_id=config.key_id,
            team_id=config.team_id,
            topic=config.topic,
            max_connections=max_connections,
            max_connection_attempts=2,
            ssl_context=ssl_context,
        )

    async def _one(
        self, payload: dict[str, Any], token: str, note: Notification, now: float
    ) -> DeviceResult:
        request = notification_request(payload, token, note, now)
        async with self._in_flight:
            started = time.perf_counter()
            _USED_TOKEN.set(None)
            try:
                # asyncio.timeout rather than wait_for: no extra task per send.
                async with asyncio.timeout(self._timeout_s):
                    result = await self._pool.send_notification(request)
            except TimeoutError:
                error: DeliveryError = RetryableError(
                    "APNs did not answer in time", code=Code.PROVIDER_TIMEOUT
                )
                return DeviceResult("apns", token, None, error, self._elapsed_ms(started))
            except (ApnsConnectionError, MaxAttemptsExceeded, OSError) as exc:
                error = RetryableError(
                    f"Could not reach APNs ({type(exc).__name__})", code=Code.PROVIDER_UNREACHABLE
                )
                return DeviceResult("apns", token, None, error, self._elapsed_ms(started))
        latency_ms = self._elapsed_ms(started)
        if result.is_successful:
            return DeviceResult("apns", token, result.notification_id, None, latency_ms)
        error = classify(str(result.status), result.description)
        if result.description == EXPIRED_PROVIDER_TOKEN:
            self.auth.rejected(_USED_TOKEN.get())
        return DeviceResult("apns", token, None, error, latency_ms)

    @staticmethod
    def _elapsed_ms(started: float) -> float:
        return (time.perf_counter() - started) * 1000

    async def send(self, note: Notes, tokens: Sequence[str]) -> list[DeviceResult]:
        """A few lanes, each sending one token after another: a task per token cost more
        CPU (its creation, scheduling and completion) than the lanes' fewer streams in
        flight cost throughput."""
        await self.auth.refresh()
        shared = apns_payload(note) if isinstance(note, Notification) else None
        pending = iter(enumerate(tokens))
        by_index: dict[int, DeviceResult] = {}
        now = time.time()

        async def lane() -> None:
            for i, token in pending:
                this = note_at(note, i)
                payload = shared if shared is not None else apns_payload(this)
                by_index[i] = await self._one(payload, token, this, now)

        await asyncio.gather(*(lane() for _ in range(min(len(tokens), LANES_PER_CALL))))
        return [by_index[i] for i in range(len(tokens))]

    async def close(self) -> None:
        self._pool.close()
