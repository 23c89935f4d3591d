"""Simulated Google OAuth2 + FCM HTTP v1, and APNs, speaking their real protocols.

- ``POST /token`` (plain HTTP, where google-auth posts a service account's signed
  JWT assertion): checks the RS256 signature against the project's registered
  public key and answers an access token with ``expires_in``;
- ``POST /v1/projects/{project}/messages:send`` (HTTP/2 + TLS, or HTTP/1.1):
  checks the bearer, then every rule of ``fcm_rules``;
- ``POST /3/device/{token}`` (HTTP/2 + TLS only, like Apple): checks every rule of
  ``apns_rules`` (the ES256 provider JWT against the registered key and its age and
  refresh rate, the topic, the apns-* headers, the payload); echoes ``apns-id``.
Keys and projects are registered through ``/_sim/fcm/…`` and ``/_sim/apns/…``.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from worker.sim import apns_rules, fcm_rules
from worker.sim.h2server import Request as H2Request
from worker.sim.h2server import Response as H2Response
from worker.sim.rules import Refusal
from worker.sim.state import Fault, SimState

ACCESS_TOKEN_TTL_S = 3600
# google-auth signs the assertion for Google's own token URL whatever token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
FCM_PATH = re.compile(r"^/v1/projects/([^/]+)/messages:send$")
APNS_PATH = re.compile(r"^/3/device/([^/?]*)$")

# FCM errorCode → (HTTP status, gRPC status, message)
FCM_ERRORS: dict[str, tuple[int, str, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "INVALID_ARGUMENT": (
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
}
# APNs reason → status
APNS_REASONS: dict[str, int] = {
    "BadDeviceToken": 400,
    "DeviceTokenNotForTopic": 400,
    "PayloadEmpty": 400,
    "TopicDisallowed": 400,
    "BadTopic": 400,
    "MissingTopic": 400,
    "ExpiredProviderToken": 403,
    "InvalidProviderToken": 403,
    "MissingProviderToken": 403,
    "Unregistered": 410,
    "ExpiredToken": 410,
    "PayloadTooLarge": 413,
    "TooManyProviderTokenUpdates": 429,
    "TooManyRequests": 429,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "Shutdown": 503,
}


# How an FCM fault asks the HTTP/2 port for a connection-level answer (goaway, drop).
_ACTION = "x-sim-action"


class FcmProjectSpec(BaseModel):
    client_email: str
    public_key_pem: str


class ApnsKeySpec(BaseModel):
    team_id: str
    public_key_pem: str
    topics: list[str] = Field(default_factory=list)
    # Apple's clock for this key's provider tokens (a test may shorten both, as if time
    # passed): older than the first is expired; a new token sooner than the second after
    # the previous one is refused (TooManyProviderTokenUpdates).
    token_max_age_s: float = apns_rules.TOKEN_MAX_AGE_S
    token_min_refresh_s: float = apns_rules.TOKEN_MIN_REFRESH_S


def fcm_error(code: str, message: str | None = None) -> tuple[int, dict[str, Any]]:
    status, grpc, default = FCM_ERRORS.get(code, (400, code, code))
    error: dict[str, Any] = {"code": status, "message": message or default, "status": grpc}
    if code in FCM_ERRORS and code not in ("UNAVAILABLE", "INTERNAL"):
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": code,
            }
        ]
    return status, {"error": error}


class PushSim:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.projects: dict[str, FcmProjectSpec] = {}
        self.access_tokens: dict[str, tuple[str, float]] = {}  # token → (client_email, expiry)
        self.apns_keys: dict[str, ApnsKeySpec] = {}
        self.apns_jwts: dict[str, tuple[str, float]] = {}  # accepted JWT → (key id, iat)
        # key id → (its newest accepted token, when it was first seen)
        self.apns_newest: dict[str, tuple[str, float]] = {}
        self.apns_refused_updates: dict[str, int] = {}  # key id → tokens refused as too soon
        self.oauth_tokens_issued: dict[str, int] = {}  # project id → access tokens issued
        self.router = self._build_router()

    # --- OAuth2 --------------------------------------------------------------

    def issue_token(self, assertion: str) -> tuple[int, dict[str, Any]]:
        invalid = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return 400, invalid
        found = next(
            ((pid, p) for pid, p in self.projects.items() if p.client_email == claims.get("iss")),
            None,
        )
        if found is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid issuer."}
        project_id, spec = found
        try:
            jwt.decode(
                assertion,
                spec.public_key_pem,
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_AUDIENCE],
                options={"require": ["exp", "iat"]},
            )
        except jwt.PyJWTError:
            return 400, invalid
        token = "ya29.sim-" + secrets.token_urlsafe(32)
        self.access_tokens[token] = (spec.client_email, time.time() + ACCESS_TOKEN_TTL_S)
        self.oauth_tokens_issued[project_id] = self.oauth_tokens_issued.get(project_id, 0) + 1
        return 200, {
            "access_token": token,
            "expires_in": ACCESS_TOKEN_TTL_S - 1,
            "token_type": "Bearer",
        }

    # --- FCM -------------------------------------------------------------------

    async def fcm_send(
        self, project_id: str, authorization: str, raw: bytes, user_agent: str = ""
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        message = body.get("message") if isinstance(body, dict) else None
        target = ""
        if isinstance(message, dict):
            target = str(message.get("token") or message.get("fid") or "")
        # The client's name is kept: which FCM sender posted it (tests run both).
        entry = self.state.record(
            "fcm",
            method="POST",
            project_id=project_id,
            token=target,
            body=body,
            user_agent=user_agent,
        )
        status, headers, answer = await self._fcm_answer(project_id, authorization, body, entry)
        entry["status"] = status
        return status, headers, answer

    async def _fcm_answer(
        self, project_id: str, authorization: str, body: Any, entry: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        project = self.projects.get(project_id)
        scheme, _, bearer = authorization.partition(" ")
        grant = self.access_tokens.get(bearer) if scheme.lower() == "bearer" else None
        if (
            project is None
            or grant is None
            or grant[0] != project.client_email
            or (grant[1] < time.time())
        ):
            entry["auth"] = "bad_token"
            return (
                401,
                {},
                {
                    "error": {
                        "code": 401,
                        "status": "UNAUTHENTICATED",
                        "message": "Request had invalid authentication credentials.",
                    }
                },
            )
        entry["auth"] = "ok"
        refused = fcm_rules.check(body)
        if refused is not None:
            entry["rule"] = refused.id
            return self._fcm_error_tuple(refused.rule.error, refused.message)
        message = body["message"]
        token = str(message.get("token") or message.get("fid") or "")
        fault = self.state.take_fault("fcm", {"token": token, "project_id": project_id})
        if fault is not None:
            answer = await self._fcm_fault(fault, entry)
            if answer is not None:
                return answer
        name = f"projects/{project_id}/messages/{uuid.uuid4().int % 10**19}"
        entry["name"] = name
        return 200, {}, {"name": name}

    @staticmethod
    def _fcm_error_tuple(
        code: str, message: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        status, body = fcm_error(code, message)
        return status, headers or {}, body

    async def _fcm_fault(
        self, fault: Fault, entry: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any]] | None:
        entry["fault"] = fault.kind
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay_s)
            return None
        if fault.kind in ("goaway", "drop"):
            # A connection-level answer (the HTTP/2 port acts on it: ``handle_h2``).
            return 0, {_ACTION: fault.kind}, {}
        headers = {"retry-after": f"{fault.retry_after_s:g}"} if fault.retry_after_s else {}
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay_s)
            return (
                504,
                {},
                {
                    "error": {
                        "code": 504,
                        "status": "DEADLINE_EXCEEDED",
                        "message": "Deadline exceeded",
                    }
                },
            )
        if fault.kind == "http":
            return fault.http_status or 500, headers, {}
        status, body = fcm_error(str(fault.code or "UNAVAILABLE"), fault.body)
        return fault.http_status or status, headers, body

    # --- APNs ------------------------------------------------------------------

    def _check_provider_token(self, authorization: str, topic: str) -> Refusal | None:
        """What APNs would refuse about this provider token (and topic), or None."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return apns_rules.refusal("missing_provider_token")
        now = time.time()
        known = self.apns_jwts.get(token)
        if known is None:
            try:
                header = jwt.get_unverified_header(token)
                key_id = str(header.get("kid"))
                spec = self.apns_keys[key_id]
                claims = jwt.decode(
                    token,
                    spec.public_key_pem,
                    algorithms=["ES256"],
                    options={"require": ["iat", "iss"]},
                )
                iat = float(claims["iat"])
            except (jwt.PyJWTError, KeyError, TypeError, ValueError):
                return apns_rules.refusal("invalid_provider_token")
            if claims["iss"] != spec.team_id or iat > now + 60:
                return apns_rules.refusal("invalid_provider_token")
            newest = self.apns_newest.get(key_id)
            if (
                newest is not None
                and newest[0] != token
                and now - newest[1] < spec.token_min_refresh_s
            ):
                self.apns_refused_updates[key_id] = self.apns_refused_updates.get(key_id, 0) + 1
                return apns_rules.refusal("provider_token_updates")
            if newest is None or newest[0] != token:
                self.apns_newest[key_id] = (token, now)
            known = self.apns_jwts[token] = (key_id, iat)
        key_id, iat = known
        spec = self.apns_keys[key_id]
        if now - iat > spec.token_max_age_s:
            return apns_rules.refusal("expired_provider_token")
        if not topic:
            return apns_rules.refusal("missing_topic")
        if topic not in spec.topics:
            return apns_rules.refusal("topic")
        return None

    async def apns_send(self, request: H2Request) -> H2Response:
        match = APNS_PATH.match(request.path)
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4()).upper()
        topic = request.headers.get("apns-topic", "")
        token = match.group(1) if match else ""
        try:
            body: Any = json.loads(request.body) if request.body else None
        except ValueError:
            body = None
        entry = self.state.record(
            "apns",
            method=request.method,
            path=request.path,
            token=token,
            topic=topic,
            apns_id=apns_id,
            body=body,
            push_type=request.headers.get("apns-push-type"),
            collapse_id=request.headers.get("apns-collapse-id"),
            priority=request.headers.get("apns-priority"),
            expiration=request.headers.get("apns-expiration"),
        )
        refused = apns_rules.check_request(request.method, match.group(1) if match else None)
        if refused is not None:
            return self._apns_refusal(entry, apns_id, refused)
        refused = self._check_provider_token(request.headers.get("authorization", ""), topic)
        if refused is not None:
            if refused.rule.status == 403:
                entry["auth"] = "bad_token"
            return self._apns_refusal(entry, apns_id, refused)
        entry["auth"] = "ok"
        refused = apns_rules.check_headers(request.headers, request.body)
        if refused is not None:
            return self._apns_refusal(entry, apns_id, refused)
        fault = self.state.take_fault("apns", {"token": token, "topic": topic})
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.kind in ("delay", "timeout"):
                await asyncio.sleep(fault.delay_s)
            if fault.kind == "timeout":
                return self._apns_reason(entry, apns_id, "ServiceUnavailable")
            if fault.kind in ("error", "http"):
                return self._apns_reason(
                    entry,
                    apns_id,
                    str(fault.code or "ServiceUnavailable"),
                    fault.http_status,
                    fault.retry_after_s,
                )
        entry["status"] = 200
        return H2Response(200, [("apns-id", apns_id)])

    def _apns_refusal(self, entry: dict[str, Any], apns_id: str, refused: Refusal) -> H2Response:
        entry["rule"] = refused.id
        return self._apns_reason(entry, apns_id, refused.rule.error, refused.rule.status)

    def _apns_reason(
        self,
        entry: dict[str, Any],
        apns_id: str,
        reason: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> H2Response:
        status = status or APNS_REASONS.get(reason, 400)
        entry.update(status=status, reason=reason)
        answer: dict[str, Any] = {"reason": reason}
        if status == 410:
            answer["timestamp"] = int(time.time() * 1000)
        headers = [("apns-id", apns_id), ("content-type", "application/json")]
        if retry_after_s is not None:
            headers.append(("retry-after", f"{retry_after_s:g}"))
        return H2Response(status, headers, json.dumps(answer).encode())

    # --- the HTTP/2 + TLS port ---------------------------------------------------

    async def handle_h2(self, request: H2Request) -> H2Response:
        if request.path.startswith("/3/device/"):
            return await self.apns_send(request)
        fcm = FCM_PATH.match(request.path)
        if fcm and request.method == "POST":
            status, headers, answer = await self.fcm_send(
                fcm.group(1),
                request.headers.get("authorization", ""),
                request.body,
                request.headers.get("user-agent", ""),
            )
            if status == 0:
                return H2Response(0, action=headers[_ACTION])
            return H2Response(
                status,
                [("content-type", "application/json"), *headers.items()],
                json.dumps(answer).encode(),
            )
        return H2Response(404, [("content-type", "application/json")], b'{"error":"not found"}')

    # --- routes on the plain HTTP port ----------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Credentials minted by clients: a client reusing its tokens keeps these small."""
        jwts_by_key: dict[str, int] = {}
        for key_id, _ in self.apns_jwts.values():
            jwts_by_key[key_id] = jwts_by_key.get(key_id, 0) + 1
        return {
            "oauth_tokens_issued": self.oauth_tokens_issued,
            "apns_jwts_seen": jwts_by_key,
            "apns_token_updates_refused": self.apns_refused_updates,
        }

    def _build_router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = parse_qs((await request.body()).decode())
            self.state.record("oauth", method="POST", grant_type=form.get("grant_type", [""])[0])
            status, body = self.issue_token(form.get("assertion", [""])[0])
            return JSONResponse(body, status)

        @router.post("/v1/projects/{project_id}/messages:send")
        async def fcm_send(project_id: str, request: Request) -> JSONResponse:
            status, headers, answer = await self.fcm_send(
                project_id,
                request.headers.get("authorization", ""),
                await request.body(),
                request.headers.get("user-agent", ""),
            )
            if status == 0:  # a connection-level fault: this port can only say 503
                status, headers, answer = self._fcm_error_tuple("UNAVAILABLE")
            return JSONResponse(answer, status, headers=headers)

        @router.put("/_sim/fcm/projects/{project_id}")
        async def put_project(project_id: str, spec: FcmProjectSpec) -> dict[str, str]:
            self.projects[project_id] = spec
            return {"project_id": project_id}

        @router.put("/_sim/apns/keys/{key_id}")
        async def put_key(key_id: str, spec: ApnsKeySpec) -> dict[str, str]:
            self.apns_keys[key_id] = spec
            # A key registered again is checked afresh: tokens it signed before are
            # verified again against it.
            for token in [t for t, (kid, _) in self.apns_jwts.items() if kid == key_id]:
                del self.apns_jwts[token]
            return {"key_id": key_id}

        @router.get("/_sim/apns/keys/{key_id}")
        async def get_key(key_id: str) -> JSONResponse:
            spec = self.apns_keys.get(key_id)
            if spec is None:
                return JSONResponse({"error": "unknown key"}, 404)
            return JSONResponse(spec.model_dump())

        return router
