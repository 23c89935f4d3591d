"""Every error the API returns has one shape: ``{"success": false, "error", "code"}``.

FastAPI's default 422 for a malformed body is replaced by a 400 that names the
field: in this API 422 means a template problem.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker import outages

log = logging.getLogger(__name__)

# Validation error types raised by our own validators, used as the API code as is; a
# template parameter WhatsApp would refuse is a 422 like every template problem.
_OWN_CODES = {
    "invalid_phone_number",
    "invalid_request",
    "invalid_push_token",
    "reserved_data_key",
    "template_parameter_invalid",
}
_STATUS = {"template_parameter_invalid": 422}
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        error: str,
        code: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error
        self.code = code
        self.headers = headers or {}
        self.extra = extra


class BodyTooLarge(ApiError):
    """A request body past its route's limit (raised while it is being read)."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(
            413,
            f"Request body larger than {limit_bytes:,} bytes",
            "payload_too_large",
        )


def store_unavailable() -> ApiError:
    """Redis is down or unreachable: the client should come back in a moment."""
    return ApiError(
        503,
        "The message store is unavailable; try again shortly",
        "store_unavailable",
        headers={"Retry-After": "1"},
    )


def store_full() -> ApiError:
    """Redis is at its ``maxmemory`` and refuses writes (``noeviction``): nothing of the
    request was stored. Freeing memory takes an operator or the workers draining the
    queues, so the client is asked to wait longer than after an outage."""
    return ApiError(
        503,
        "The message store is full; try again later",
        "store_full",
        headers={"Retry-After": "30"},
    )


# The failures of the store that mean "try again shortly", not a bug.
STORE_DOWN: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    KombuOperationalError,
)


def store_error(exc: Exception) -> ApiError | None:
    """The answer for a failure of the store (down or full), or None for anything else."""
    if isinstance(exc, STORE_DOWN):
        log.error("redis unavailable: %s", exc)
        return store_unavailable()
    if outages.store_full(exc):
        log.error("redis full, write refused: %s", exc)
        return store_full()
    return None


def error_body(error: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "error": error, "code": code, **extra}


def _field(loc: Sequence[int | str]) -> str:
    """``("body", "parameters", 0, "text")`` → ``parameters[0].text``."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_status(code: str) -> int:
    return _STATUS.get(code, 400)


def _validation_error(exc: RequestValidationError) -> tuple[str, str, str]:
    first = exc.errors()[0]
    kind = str(first.get("type", ""))
    field = _field(first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    if kind == "json_invalid":
        return "Request body is not valid JSON", "invalid_json", field
    if kind == "missing" and field == "":
        return "Request body is required", "invalid_request", field
    if kind in _OWN_CODES:
        if kind == "invalid_phone_number":
            return message, kind, field
        return (f"{field}: {message}" if field else message), kind, field
    return (f"{field}: {message}" if field else message), "invalid_request", field


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.error, exc.code, **exc.extra), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        error, code, field = _validation_error(exc)
        extra = {"field": field} if field else {}
        return JSONResponse(error_body(error, code, **extra), validation_status(code))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(str(exc.detail), code), exc.status_code, headers=exc.headers)

    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("Internal error", "internal_error"), 500)

    async def _store(request: Request, exc: Exception) -> JSONResponse:
        answer = store_error(exc)
        if answer is None:  # a ResponseError that is not "full": a bug
            return await _unexpected(request, exc)
        return JSONResponse(
            error_body(answer.error, answer.code), answer.status_code, headers=answer.headers
        )

    # Publishing a job goes through kombu, which wraps the same outage in its own error.
    # A full Redis answers OOM, a ResponseError (inside a script too: see store_full).
    for kind in (*STORE_DOWN, RedisResponseError):
        app.add_exception_handler(kind, _store)

    app.add_exception_handler(Exception, _unexpected)
