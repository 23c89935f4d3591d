"""The two FCM senders give the same result for the same FCM answer: firebase-admin's
(``FcmSender``, httpx) and ours (``LeanFcmSender``, h2client), both against one HTTP/2 +
TLS server of the simulator's kind answering FCM's own bodies, token by token; and what
only a transport of ours has to handle (a refused stream, GOAWAY, a connection dropped
mid-batch, a deadline)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from worker.config import FcmSenderName
from worker.models import FcmConfig
from worker.models.push_payload import Notification
from worker.providers import fcm, fcm_lean, h2client
from worker.providers.push import DeviceResult
from worker.sim import credentials
from worker.sim.h2server import Request, Response, serve, tls_context

PROJECT = "lean-test"
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def _error(status: int, grpc: str, message: str, fcm_code: str | None = None) -> dict[str, Any]:
    details = [{"@type": _FCM_ERROR, "errorCode": fcm_code}] if fcm_code else []
    return {"error": {"code": status, "message": message, "status": grpc, "details": details}}


# token → (status, headers, body): what FCM answers, in its own words.
ANSWERS: dict[str, tuple[int, list[tuple[str, str]], dict[str, Any]]] = {
    "ok": (200, [], {"name": f"projects/{PROJECT}/messages/0:1"}),
    "unregistered": (
        404,
        [],
        _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
    ),
    "bad-token": (
        400,
        [],
        _error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            "INVALID_ARGUMENT",
        ),
    ),
    "bad-payload": (
        400,
        [],
        _error(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.data[0].value'",
            "INVALID_ARGUMENT",
        ),
    ),
    "quota": (
        429,
        [("retry-after", "7")],
        _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED"),
    ),
    "quota-no-header": (
        429,
        [],
        _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED"),
    ),
    "unavailable": (
        503,
        [("retry-after", "3")],
        _error(503, "UNAVAILABLE", "The service is unavailable.", "UNAVAILABLE"),
    ),
    "internal": (500, [], _error(500, "INTERNAL", "Internal error.", "INTERNAL")),
    "mismatch": (
        403,
        [],
        _error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
    ),
    "third-party": (
        401,
        [],
        _error(401, "UNAUTHENTICATED", "Auth error from APNS", "THIRD_PARTY_AUTH_ERROR"),
    ),
    "denied": (403, [], _error(403, "PERMISSION_DENIED", "The caller does not have permission")),
    "no-project": (404, [], _error(404, "NOT_FOUND", "Requested entity was not found.")),
}


def _token_of(request: Request) -> str:
    return str(json.loads(request.body)["message"]["token"]).split(":")[0]


async def _answer(request: Request) -> Response:
    status, headers, body = ANSWERS[_token_of(request)]
    return Response(
        status, [("content-type", "application/json"), *headers], json.dumps(body).encode()
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def _fcm_server(
    tmp_path: Path, handler: Callable[[Request], Awaitable[Response]]
) -> AsyncIterator[FcmConfig]:
    context, ca = tls_context(tmp_path / "ca", "127.0.0.1")
    port = _free_port()
    server = await serve(handler, "127.0.0.1", port, context)
    account = credentials.service_account(PROJECT, "http://127.0.0.1:9/token")
    try:
        yield FcmConfig(
            project_id=PROJECT,
            service_account=SecretStr(account.json),
            endpoint=f"https://127.0.0.1:{port}",
            ca_file=str(ca),
        )
    finally:
        server.close()


def _valid_token(credential: Any) -> None:
    """No OAuth server here: the credential holds a token, and a refresh makes a new one."""

    def refresh(_request: object) -> None:
        credential.token = f"token-{dt.datetime.now().timestamp()}"
        credential.expiry = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)

    refresh(None)
    credential.refresh = refresh


def count_walks(monkeypatch: pytest.MonkeyPatch, *, client_side: bool) -> list[int]:
    """The streams h2 held at each of its walks over them (its open-stream count), on the
    client's connections or the server's (both run in the tests' process)."""
    from h2.connection import H2Connection

    walks: list[int] = []
    walk = H2Connection._open_streams

    def counted(self: H2Connection, remainder: int) -> int:
        if self.config.client_side == client_side:
            walks.append(len(self.streams))
        return walk(self, remainder)

    monkeypatch.setattr(H2Connection, "_open_streams", counted)
    return walks


def _senders(config: FcmConfig) -> tuple[fcm.FcmSender, fcm_lean.LeanFcmSender]:
    admin = fcm.FcmSender(config, timeout_s=5)
    _valid_token(admin._service._credential)
    lean = fcm_lean.LeanFcmSender(config, timeout_s=5)
    _valid_token(lean._token._credential)
    return admin, lean


def _seen(result: DeviceResult) -> tuple[Any, ...]:
    error = result.error
    if error is None:
        return ("ok", result.provider_id)
    return (
        type(error).__name__,
        error.code,
        error.provider_code,
        getattr(error, "retry_after_s", None),
    )


def test_both_senders_classify_every_fcm_answer_alike(tmp_path: Path) -> None:
    async def run() -> None:
        async with _fcm_server(tmp_path, _answer) as config:
            admin, lean = _senders(config)
            tokens = [f"{name}:APA91b-lean-test" for name in ANSWERS]
            note = Notification("Hi", "There")
            try:
                theirs = await admin.send(note, tokens)
                ours = await lean.send(note, tokens)
            finally:
                await admin.close()
                await lean.close()
            for name, a, b in zip(ANSWERS, theirs, ours, strict=True):
                assert _seen(b) == _seen(a), name
            kinds = {name: _seen(b)[0] for name, b in zip(ANSWERS, ours, strict=True)}
            assert kinds["ok"] == "ok"
            assert kinds["unregistered"] == kinds["bad-token"] == "InvalidTokenError"
            assert kinds["quota"] == kinds["unavailable"] == "RetryableError"
            assert kinds["third-party"] == kinds["no-project"] == "AccountError"
            assert kinds["bad-payload"] == "PermanentError"

    asyncio.run(run())


def test_both_senders_post_the_same_message(tmp_path: Path) -> None:
    bodies: list[dict[str, Any]] = []
    paths: list[str] = []

    async def record(request: Request) -> Response:
        bodies.append(json.loads(request.body))
        paths.append(request.path)
        assert request.headers["authorization"].startswith("Bearer token-")
        return await _answer(request)

    async def run() -> None:
        async with _fcm_server(tmp_path, record) as config:
            admin, lean = _senders(config)
            note = Notification("Hi", "There", url="https://x.test/a", data={"k": "v"})
            try:
                await admin.send(note, ["ok:APA91b-one"])
                await lean.send(note, ["ok:APA91b-one"])
            finally:
                await admin.close()
                await lean.close()

    asyncio.run(run())
    assert bodies[0] == bodies[1]
    assert paths == [f"/v1/projects/{PROJECT}/messages:send"] * 2


def test_firebase_admins_calls_go_one_at_a_time_across_sends_made_at_once(
    tmp_path: Path,
) -> None:
    """A push job sends several slices at a time: firebase-admin's calls of all still go one
    after another (its HTTP/2 client costs more per message with more streams open), and
    each device still gets its own answer."""
    open_now: list[int] = []
    streams = 0

    async def slow(request: Request) -> Response:
        nonlocal streams
        streams += 1
        open_now.append(streams)
        await asyncio.sleep(0.01)
        streams -= 1
        return await _answer(request)

    async def run() -> list[list[DeviceResult]]:
        async with _fcm_server(tmp_path, slow) as config:
            admin = fcm.FcmSender(config, timeout_s=5, batch_size=10)
            _valid_token(admin._service._credential)
            note = Notification("Hi", "There")
            try:
                return await asyncio.gather(
                    *(admin.send(note, [f"ok:APA91b-{s}{i}" for i in range(30)]) for s in "ab")
                )
            finally:
                await admin.close()

    both = asyncio.run(run())
    assert [len(results) for results in both] == [30, 30]
    assert all(r.ok for results in both for r in results)
    assert max(open_now) == 10  # one call of 10 at a time, never the two sends' at once


def test_a_401_refreshes_the_token_once_and_sends_again(tmp_path: Path) -> None:
    seen: list[str] = []

    async def expired_once(request: Request) -> Response:
        seen.append(request.headers["authorization"])
        if len(seen) == 1:
            body = _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            return Response(401, [("content-type", "application/json")], json.dumps(body).encode())
        return await _answer(request)

    async def run() -> list[DeviceResult]:
        async with _fcm_server(tmp_path, expired_once) as config:
            _, lean = _senders(config)
            try:
                return await lean.send(Notification("Hi", "There"), ["ok:APA91b-401"])
            finally:
                await lean.close()

    [result] = asyncio.run(run())
    assert result.ok
    assert len(seen) == 2
    assert seen[0] != seen[1]  # the second request carried the new token


def test_a_deadline_cancels_the_stream_and_reads_as_a_timeout(tmp_path: Path) -> None:
    async def slow(request: Request) -> Response:
        if _token_of(request) == "slow":
            await asyncio.sleep(3)
        return await _answer(request)

    async def run() -> list[DeviceResult]:
        async with _fcm_server(tmp_path, slow) as config:
            _, lean = _senders(config)
            lean.timeout_s = 0.5
            try:
                return await lean.send(
                    Notification("Hi", "There"), ["slow:APA91b-x", "ok:APA91b-y"]
                )
            finally:
                await lean.close()

    slow_result, ok_result = asyncio.run(run())
    assert ok_result.ok
    assert slow_result.error is not None
    assert (type(slow_result.error).__name__, slow_result.error.code) == (
        "RetryableError",
        "provider_timeout",
    )


def _once(action: str) -> Callable[[Request], Awaitable[Response]]:
    """A server that answers the first request for token ``action`` with that connection
    action (goaway, drop), every other request as FCM would."""
    done: set[str] = set()

    async def handler(request: Request) -> Response:
        token = _token_of(request)
        if token == action and token not in done:
            done.add(token)
            await asyncio.sleep(0.05)  # the batch's other streams are in flight by now
            return Response(0, action=action)
        if token == action:  # sent again: this time it goes through
            status, headers, body = ANSWERS["ok"]
            return Response(status, headers, json.dumps(body).encode())
        return await _answer(request)

    return handler


def test_after_a_goaway_the_unprocessed_request_goes_again_on_a_new_connection(
    tmp_path: Path,
) -> None:
    async def run() -> list[DeviceResult]:
        async with _fcm_server(tmp_path, _once("goaway")) as config:
            _, lean = _senders(config)
            try:
                first = await lean.send(Notification("Hi", "There"), ["ok:APA91b-1"])
                connection = lean._conn
                results = await lean.send(
                    Notification("Hi", "There"), ["goaway:APA91b-2", "ok:APA91b-3"]
                )
                assert lean._conn is not connection  # a new connection took the resend
                return first + results
            finally:
                await lean.close()

    results = asyncio.run(run())
    assert [r.ok for r in results] == [True, True, True]


def test_a_dropped_connection_fails_its_requests_as_retryable_in_both_senders(
    tmp_path: Path,
) -> None:
    async def run(which: int) -> list[DeviceResult]:
        async with _fcm_server(tmp_path, _once("drop")) as config:
            sender = _senders(config)[which]
            try:
                return await sender.send(
                    Notification("Hi", "There"), ["drop:APA91b-1", "ok:APA91b-2"]
                )
            finally:
                await sender.close()

    for which in (0, 1):
        dropped, _ = asyncio.run(run(which))
        assert dropped.error is not None, which
        assert (type(dropped.error).__name__, dropped.error.code) == (
            "RetryableError",
            "provider_unavailable",
        ), which


def test_more_bodies_than_the_connection_window_holds_all_go(tmp_path: Path) -> None:
    """500 streams at once, ~125 KB of bodies against the server's 64 KB connection
    window: the rest of each body waits for a WINDOW_UPDATE, none for its deadline."""

    async def run() -> list[DeviceResult]:
        async with _fcm_server(tmp_path, _answer) as config:
            _, lean = _senders(config)
            lean.timeout_s = 3  # a send's requests all go at once
            try:
                note = Notification("Hi", "There " * 20)
                return await lean.send(note, [f"ok:APA91b-{i:04d}" for i in range(500)])
            finally:
                await lean.close()

    results = asyncio.run(run())
    assert all(r.ok for r in results), next(r.error for r in results if not r.ok)


def test_h2_walks_its_streams_once_every_64_new_ones_and_forgets_the_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 requests on one connection: h2's walk over every stream (O(streams in flight)
    per request) runs ~1 time in 64, and still forgets the closed streams."""
    walks = count_walks(monkeypatch, client_side=True)  # not the test server's, here too

    async def run() -> tuple[list[DeviceResult], int]:
        async with _fcm_server(tmp_path, _answer) as config:
            _, lean = _senders(config)
            try:
                results = []
                for first in (0, 500):
                    tokens = [f"ok:APA91b-{i:04d}" for i in range(first, first + 500)]
                    results += await lean.send(Notification("Hi", "There"), tokens)
                assert lean._conn is not None
                return results, len(lean._conn._conn.streams)
            finally:
                await lean.close()

    results, held = asyncio.run(run())
    assert all(r.ok for r in results), next(r.error for r in results if not r.ok)
    assert 1000 // 64 <= len(walks) <= 1000 // 64 + 2
    # The first send's 500 closed streams were forgotten during the second (the server
    # allows 1,000 at once: each send's 500 are all open together).
    assert max(walks) <= 500 + 64
    assert held <= 500 + 64


def test_the_request_headers_pass_h2s_own_checks() -> None:
    """h2client skips h2's checks of outbound headers (a fifth of a request's CPU): the
    block the lean sender sends must pass them, as a connection header would not."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.exceptions import ProtocolError

    from worker.providers.h2client import request_headers

    def checked(headers: list[tuple[bytes, bytes]]) -> None:
        config = H2Configuration(
            client_side=True, header_encoding=None, normalize_outbound_headers=False
        )
        conn = H2Connection(config)
        conn.initiate_connection()
        block = request_headers(
            b"POST", b"fcm.googleapis.com", b"/v1/projects/p/messages:send", headers, 120
        )
        conn.send_headers(conn.get_next_available_stream_id(), block)

    checked([(b"authorization", b"Bearer ya29.token"), *fcm_lean.HEADERS])
    try:
        checked([(b"connection", b"keep-alive")])
    except ProtocolError:
        pass
    else:
        raise AssertionError("h2 accepted a connection-specific header")


def test_an_accounts_own_sender_wins_over_the_workers_setting() -> None:
    """`dispatch channels fcm configure --sender lean` tries our transport on one account
    while the workers' DISPATCH_FCM_SENDER stays firebase-admin (and the other way)."""
    from worker.delivery.push_clients import PushClients

    info = credentials.service_account(PROJECT, "http://127.0.0.1:9/token")

    def config(sender: FcmSenderName | None) -> FcmConfig:
        return FcmConfig(project_id=PROJECT, service_account=SecretStr(info.json), sender=sender)

    async def made(default: str, own: FcmSenderName | None) -> type:
        clients = PushClients(timeout_s=5, fcm_sender=default)
        sender = await clients.get("acct", "fcm", config(own), "v1")
        await clients.close()
        return type(sender)

    assert asyncio.run(made("firebase-admin", "lean")) is fcm_lean.LeanFcmSender
    assert asyncio.run(made("lean", "firebase-admin")) is fcm.FcmSender
    assert asyncio.run(made("lean", None)) is fcm_lean.LeanFcmSender
    assert asyncio.run(made("firebase-admin", None)) is fcm.FcmSender


@asynccontextmanager
async def _proxy(port: int) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A TCP relay to ``port`` whose bytes vanish both ways once the event is set: a peer
    gone without a word (a NAT that dropped the connection)."""
    silent = asyncio.Event()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not silent.is_set():
                writer.write(data)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        with contextlib.suppress(OSError):
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        writer.close()
        up_writer.close()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], silent
    finally:
        server.close()


def test_an_idle_connection_is_pinged_and_a_silent_one_is_closed(tmp_path: Path) -> None:
    async def run() -> None:
        async with _fcm_server(tmp_path, _answer) as config:
            assert config.endpoint is not None
            assert config.ca_file is not None
            server_port = int(config.endpoint.rsplit(":", 1)[1])
            async with _proxy(server_port) as (port, silent):
                conn = await h2client.connect(
                    "127.0.0.1",
                    port,
                    h2client.client_context(config.ca_file),
                    timeout_s=5,
                    ping_after_s=0.2,
                    ping_timeout_s=0.3,
                )
                try:
                    read_at = conn._last_read
                    await asyncio.sleep(0.5)
                    # Idle: a PING went out and its answer came back (the only thing read).
                    assert conn._last_read > read_at
                    assert conn.usable
                    silent.set()
                    await asyncio.sleep(1.5)
                    # No answer to the next PING: the connection is given up.
                    assert not conn.usable
                    with pytest.raises(h2client.H2Error):
                        await conn.request(b"POST", b"/", [], b"{}", 1.0)
                finally:
                    conn.close()

    asyncio.run(run())


def test_the_access_token_is_renewed_ahead_of_its_expiry_and_a_new_one_is_read_again() -> None:
    """The expiry is read once per token (not per request): a token good for the refresh
    margin plus 0.3 s is used for 0.3 s, then renewed; a token replaced meanwhile (another
    sender of the process refreshed it) is judged by its own expiry."""

    class Credential:
        token: str | None = None
        expiry: dt.datetime | None = None

    def expiring_in(seconds: float) -> dt.datetime:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return now + fcm_lean._REFRESH_AHEAD + dt.timedelta(seconds=seconds)

    credential = Credential()
    token = fcm_lean._AccessToken(credential)
    assert not token._fresh()  # no token yet
    credential.token, credential.expiry = "first", expiring_in(0.3)
    assert token._fresh()
    time.sleep(0.35)
    assert not token._fresh()
    credential.token, credential.expiry = "second", expiring_in(3600)
    assert token._fresh()
    credential.token, credential.expiry = "third", expiring_in(-1)
    assert not token._fresh()
