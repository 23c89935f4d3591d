"""FCM HTTP v1 over our own HTTP/2 connection (``h2client``), firebase-admin for the rest.

firebase-admin stays in charge of what it is good at: the service account and its OAuth2
token (google-auth), ``messaging.Message`` building and validation, its JSON encoding of a
message, and its reading of an FCM error body into its exception types — which
``fcm.classify`` maps to ours exactly as for ``FcmSender``. Only the transport is ours:
one TLS connection with many streams instead of httpx's general-purpose client, which
costs most of firebase-admin's ~0.85 ms of CPU per message here (docs/fcm-lean.md).

- One OAuth token per service account and project, shared by every sender of the
  process, refreshed on a thread a few minutes ahead of its expiry (google-auth's own
  refresh is blocking); a 401 refreshes it once and sends that request again.
- A request the server did not process (GOAWAY above its last stream, REFUSED_STREAM) is
  sent again on a new connection; a request lost with its connection is not (it may have
  been processed): it is a retryable error for that device, as with firebase-admin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import firebase_admin
import httpx
from firebase_admin import _utils, credentials, exceptions, messaging
from google.auth.transport import requests as google_auth_requests

from worker.models import FcmConfig
from worker.providers import h2client
from worker.providers.fcm import _message, classify
from worker.providers.push import DeviceResult, Notes, note_at

FCM_ORIGIN = "https://fcm.googleapis.com"
# A token with less than this left is refreshed before it is used.
_REFRESH_AHEAD = dt.timedelta(minutes=5)
# Unprocessed requests are sent again on a new connection at most this many times.
_RESENDS = 2
# firebase-admin's own request headers, lower-case bytes as HTTP/2 sends them, and a name
# of our own for this transport (httpx calls itself python-httpx).
USER_AGENT = "multichannel-dispatch-lean-fcm"
HEADERS = [
    (b"user-agent", USER_AGENT.encode()),
    (b"content-type", b"application/json; charset=utf-8"),
    (b"x-goog-api-format-version", b"2"),
    (b"x-firebase-client", f"fire-admin-python/{firebase_admin.__version__}".encode()),
]


class _AccessToken:
    """A service account's OAuth2 access token, shared by the process's senders."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential
        self._refreshing: dict[int, asyncio.Future[None]] = {}
        # The token last read, and until when (monotonic) it is used without looking at
        # its expiry again: a datetime per request was ~1 % of a send's CPU.
        self._checked: tuple[str | None, float] = (None, 0.0)

    def _fresh(self) -> bool:
        token = self._credential.token
        if token is not None and token is self._checked[0]:
            return time.monotonic() < self._checked[1]
        if not token:
            return False
        # google-auth keeps `expiry` as a naive UTC datetime.
        expiry = self._credential.expiry
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        left_s = float("inf") if expiry is None else (expiry - now - _REFRESH_AHEAD).total_seconds()
        self._checked = (token, time.monotonic() + left_s)
        return left_s > 0

    async def get(self) -> str:
        if not self._fresh():
            await self.refresh(None)
        return str(self._credential.token)

    async def refresh(self, stale: str | None) -> None:
        """A new token, unless another request already got one since ``stale`` was used
        (one refresh for a wave of 401s)."""
        if stale is not None and self._credential.token != stale:
            return
        loop = asyncio.get_running_loop()
        pending = self._refreshing.get(id(loop))
        if pending is None:
            pending = asyncio.ensure_future(
                asyncio.to_thread(self._credential.refresh, google_auth_requests.Request())
            )
            self._refreshing[id(loop)] = pending
            pending.add_done_callback(lambda _: self._refreshing.pop(id(loop), None))
        await asyncio.shield(pending)


_tokens: dict[tuple[str, str, str], _AccessToken] = {}


def _shared_token(info: dict[str, Any], project_id: str) -> _AccessToken:
    key = (str(info.get("client_email")), project_id, str(info.get("token_uri")))
    found = _tokens.get(key)
    if found is None:
        credential = credentials.Certificate(info).get_credential()
        found = _tokens[key] = _AccessToken(credential)
    return found


def _error_from(failure: httpx.HTTPError) -> exceptions.FirebaseError:
    """firebase-admin's own reading of a failed FCM call (its exception types)."""
    return _utils.handle_platform_error_from_httpx(
        failure, messaging._MessagingService._build_fcm_error_httpx
    )


class LeanFcmSender:
    """The ``FcmSender`` interface over one HTTP/2 connection of ours per sender."""

    def __init__(self, config: FcmConfig, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        info = json.loads(config.service_account.get_secret_value())
        self.project_id = config.project_id
        origin = urlsplit((config.endpoint or FCM_ORIGIN).rstrip("/"))
        self._host = origin.hostname or "fcm.googleapis.com"
        self._port = origin.port or 443
        path = f"{origin.path}/v1/projects/{config.project_id}/messages:send"
        self._path = path.encode()
        self._url = f"https://{self._host}:{self._port}{path}"
        self._ssl = h2client.client_context(config.ca_file)
        self._token = _shared_token(info, config.project_id)
        self._conn: h2client.Http2Connection | None = None
        self._connecting: asyncio.Future[h2client.Http2Connection] | None = None
        # The headers for the current access token (built again when it changes).
        self._headers: tuple[str, list[tuple[bytes, bytes]]] = ("", [])

    async def send(self, note: Notes, tokens: Sequence[str]) -> list[DeviceResult]:
        """Every token's request at once, not in calls of ``send_each``'s kind: the
        connection holds as many as the server's concurrent streams allow and queues the
        rest, and the requests of one turn of the loop go out in one write."""
        now = time.time()
        bodies = [
            json.dumps(
                {
                    "message": messaging._MessagingService.encode_message(
                        _message(note_at(note, i), token, now)
                    )
                },
                separators=(",", ":"),
            ).encode()
            for i, token in enumerate(tokens)
        ]
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(self._post(body) for body in bodies))
        latency_ms = (time.perf_counter() - started) * 1000
        return [
            DeviceResult("fcm", token, name, None if error is None else classify(error), latency_ms)
            for token, (name, error) in zip(tokens, outcomes, strict=True)
        ]

    async def _post(self, body: bytes) -> tuple[str | None, exceptions.FirebaseError | None]:
        """One message: FCM's name for it, or firebase-admin's exception for the failure."""
        refreshed, resends = False, 0
        while True:
            access = await self._token.get()
            if self._headers[0] != access:
                self._headers = (
                    access,
                    [(b"authorization", f"Bearer {access}".encode()), *HEADERS],
                )
            try:
                conn = await self._connection()
                response = await conn.request(
                    b"POST", self._path, self._headers[1], body, self.timeout_s
                )
            except h2client.Unprocessed:
                if resends < _RESENDS:
                    resends += 1
                    continue
                return None, _error_from(httpx.ConnectError("FCM did not process the request"))
            except h2client.DeadlineExceeded as exc:
                return None, _error_from(httpx.ReadTimeout(str(exc)))
            except (h2client.H2Error, OSError, TimeoutError) as exc:
                return None, _error_from(httpx.ConnectError(f"{type(exc).__name__}: {exc}"))
            if response.status == 200:
                return str(json.loads(response.body)["name"]), None
            if response.status == 401 and not refreshed:
                refreshed = True
                await self._token.refresh(access)
                continue
            request = httpx.Request("POST", self._url)
            failed = httpx.Response(
                response.status, headers=response.headers, content=response.body, request=request
            )
            status_error = httpx.HTTPStatusError(
                f"FCM answered {response.status}", request=request, response=failed
            )
            return None, _error_from(status_error)

    async def _connection(self) -> h2client.Http2Connection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        if self._connecting is None:
            # One connect for every request that finds the connection gone.
            self._connecting = asyncio.ensure_future(
                h2client.connect(self._host, self._port, self._ssl, timeout_s=self.timeout_s)
            )
        connecting = self._connecting
        try:
            self._conn = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
