"""The API's outermost layer: limits and the caller's key, before any body is read.

An anonymous caller must not make us read, parse or store anything: a request to
``/api/v1/…`` without a well-formed, existing, unrevoked key is a 401 before its body is
touched, and a body larger than its route allows is a 413 — at once when its
``Content-Length`` says so, as soon as the limit is passed when it is streamed. A key
sending faster than ``api_key_rate_per_s`` (a GCRA schedule in Redis, shared by every API
process) gets 429 with ``Retry-After``. The routes check the key's scope themselves.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api import deps
from worker.api.errors import BodyTooLarge, refusal_response, store_error
from worker.api.last_use import LastUse
from worker.api.send_route import replay
from worker.codes import Code
from worker.config import Settings
from worker.delivery.ratelimit import RateLimiter
from worker.errors import Rejected

IMPORT_PATH = "/api/v1/contacts/import"


def _json(status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> list[Message]:
    raw = json.dumps(body).encode()
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *headers,
            ],
        },
        {"type": "http.response.body", "body": raw},
    ]


class Guard:
    def __init__(self, app: ASGIApp, fastapi: FastAPI, settings: Settings) -> None:
        self.app = app
        self.fastapi = fastapi
        self.settings = settings
        self._limiter: RateLimiter | None = None
        # Requests each key may still make here without asking Redis (see _admit).
        self._leased: dict[str, int] = {}
        self._last_use = LastUse()

    def _max_bytes(self, path: str) -> int:
        if path == IMPORT_PATH:
            return self.settings.import_max_body_bytes
        return self.settings.api_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self._max_bytes(path)
        try:
            if path.startswith("/api/v1/"):
                try:
                    await self._authenticate(scope)
                except Rejected:
                    raise
                except Exception as exc:
                    # Redis down, or full (the rate limit's schedule is a write).
                    answer = store_error(exc)
                    if answer is None:
                        raise
                    raise answer from None
            length = _header(scope, b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise BodyTooLarge(limit)
            if length is None and path != IMPORT_PATH and scope["method"] in _WITH_BODY:
                # A streamed body is read here, up to the limit: the framework would turn
                # an error raised while it reads into a 400 of its own.
                receive = await _buffered(receive, limit)
        except Rejected as exc:
            status, body, headers = refusal_response(exc)
            for message in _json(
                status, body, [(k.encode(), v.encode()) for k, v in headers.items()]
            ):
                await send(message)
            return
        if length is not None or path != IMPORT_PATH:
            # Within its declared length (the server delivers no more), or read already.
            await self.app(scope, receive, send)
            return
        started, read = False, 0

        async def bounded_receive() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            status, body, _ = refusal_response(exc)
            for message in _json(status, body, []):
                await send(message)

    async def _authenticate(self, scope: Scope) -> None:
        redis = self.fastapi.state.redis
        authorization = _header(scope, b"authorization")
        key_hash = deps.hash_secret(authorization)
        key, confirmed = await deps.known_key(redis, key_hash)
        # The send routes take the key from here rather than looking it up again.
        scope.setdefault("state", {})[deps.SCOPE_KEY] = (key_hash, key, confirmed)
        if self.settings.api_key_rate_per_s:
            await self._admit(redis, key_hash)
        # Here, where the key's record is at hand anyway: at most one write per key per
        # minute. (A remembered key revoked since is refused by its route; that attempt may
        # still count as a use, which is not worth a read per request to avoid.) The check
        # is synchronous: a request that is not due costs a dict lookup, no coroutine.
        at = self._last_use.due(key.id)
        if at is not None:
            await self._last_use.write(redis, key.id, at)

    async def _admit(self, redis: Any, key_hash: str) -> None:
        """The key's GCRA schedule in Redis is the one truth for all API processes, but a
        round trip per request cost the send route a third of its rate: each process
        reserves a few requests at a time (a tenth of a second's worth, at most 10) and
        spends them locally. A process may so run ahead of the schedule by a lease; the
        schedule itself is never exceeded."""
        left = self._leased.get(key_hash, 0)
        if left > 0:
            self._leased[key_hash] = left - 1
            return
        rate = self.settings.api_key_rate_per_s
        lease = max(1, min(10, int(rate * 0.1)))
        if self._limiter is None:
            self._limiter = RateLimiter(redis, headroom=1.0)
        slot = await self._limiter.acquire(
            f"api:{key_hash}",
            rate,
            lease,
            burst=max(float(lease), rate * self.settings.api_key_burst_s),
            max_wait_s=0,
        )
        if not slot.granted:
            raise Rejected(
                Code.RATE_LIMITED,
                f"Too many requests with this API key (at most {rate:g}/s); retry later",
                retry_after_s=max(1, math.ceil(slot.wait_s)),
            )
        if len(self._leased) >= 10_000:
            self._leased.clear()
        self._leased[key_hash] = lease - 1


_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}


async def _buffered(receive: Receive, limit: int) -> Receive:
    """Read the whole body (413 past ``limit``), then hand it on as one message."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return receive  # the client went away: whoever reads next sees it too
        size += len(message.get("body", b""))
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return replay(b"".join(chunks), receive)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None
