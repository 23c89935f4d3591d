"""Every error the API returns has one shape: ``{"success": false, "error", "code"}``.

FastAPI's default 422 for a malformed body is replaced by a 400 that names the
field: in this API 422 means a template problem.

The codes and their statuses are ``worker.codes``' table; a service's ``Rejected`` is
answered with its code's status by the one handler below.
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
from worker.codes import Code
from worker.codes import message as fixed_message
from worker.codes import status as code_status
from worker.errors import Rejected

log = logging.getLogger(__name__)

# Validation error types raised by our own validators, used as the API code as is; a
# template parameter WhatsApp would refuse is a 422 like every template problem.
_OWN_CODES = {
    Code.INVALID_PHONE_NUMBER,
    Code.INVALID_REQUEST,
    Code.INVALID_PUSH_TOKEN,
    Code.RESERVED_DATA_KEY,
    Code.TEMPLATE_PARAMETER_INVALID,
}
# The framework's own refusals, by their status (which they keep: a body past the
# route's limit is HTTP's 413, whatever the table says of a notification too big).
_HTTP_CODES = {
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    413: Code.PAYLOAD_TOO_LARGE,
    415: Code.UNSUPPORTED_MEDIA_TYPE,
}


class BodyTooLarge(Rejected):
    """A request body past its route's limit (raised while it is being read): HTTP's 413,
    whatever the table says of a notification too big for its platform (a 400)."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(Code.PAYLOAD_TOO_LARGE, f"Request body larger than {limit_bytes:,} bytes")

    @property
    def status(self) -> int:
        return 413


def store_unavailable() -> Rejected:
    """Redis is down or unreachable: the client should come back in a moment."""
    return Rejected(Code.STORE_UNAVAILABLE, retry_after_s=1)


def store_full() -> Rejected:
    """Redis is at its ``maxmemory`` and refuses writes (``noeviction``): nothing of the
    request was stored. Freeing memory takes an operator or the workers draining the
    queues, so the client is asked to wait longer than after an outage."""
    return Rejected(Code.STORE_FULL, retry_after_s=30)


def refusal_response(exc: Rejected) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A refusal as the API answers it: status, the one error body, headers."""
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else {}
    return exc.status, error_body(exc.message, exc.code, **exc.body_fields()), headers


# The failures of the store that mean "try again shortly", not a bug.
STORE_DOWN: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    KombuOperationalError,
)


def store_error(exc: Exception) -> Rejected | None:
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
    """``("body", "parameters", 0, "text")`` → ``parameters[0].text``. A union's member
    tags (``function-after[_check(), QuietHours]``) are pydantic's, not a field: left out."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        if isinstance(part, str) and "[" in part:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_status(code: str) -> int:
    """A body that does not validate is a 400, unless its code says otherwise (a template
    parameter WhatsApp would refuse is a 422, like every template problem)."""
    return code_status(code) if code in _OWN_CODES else 400


def _validation_error(exc: RequestValidationError) -> tuple[str, str, str]:
    first = exc.errors()[0]
    kind = str(first.get("type", ""))
    field = _field(first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    if kind == "json_invalid":
        return fixed_message(Code.INVALID_JSON), Code.INVALID_JSON, field
    if kind == "missing" and field == "":
        return "Request body is required", Code.INVALID_REQUEST, field
    if kind in _OWN_CODES:
        if kind == "invalid_phone_number":
            return message, kind, field
        return (f"{field}: {message}" if field else message), kind, field
    return (f"{field}: {message}" if field else message), Code.INVALID_REQUEST, field


def install(app: FastAPI) -> None:
    @app.exception_handler(Rejected)
    async def _rejected(_: Request, exc: Rejected) -> JSONResponse:
        # A refusal, the API's or a service's: the status is its code's, from the table.
        status, body, headers = refusal_response(exc)
        return JSONResponse(body, status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        error, code, field = _validation_error(exc)
        extra = {"field": field} if field else {}
        return JSONResponse(error_body(error, code, **extra), validation_status(code))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, Code.HTTP_ERROR)
        return JSONResponse(error_body(str(exc.detail), code), exc.status_code, headers=exc.headers)

    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body(fixed_message(Code.INTERNAL_ERROR), Code.INTERNAL_ERROR),
            code_status(Code.INTERNAL_ERROR),
        )

    async def _store(request: Request, exc: Exception) -> JSONResponse:
        refusal = store_error(exc)
        if refusal is None:  # a ResponseError that is not "full": a bug
            return await _unexpected(request, exc)
        status, body, headers = refusal_response(refusal)
        return JSONResponse(body, status, headers=headers)

    # Publishing a job goes through kombu, which wraps the same outage in its own error.
    # A full Redis answers OOM, a ResponseError (inside a script too: see store_full).
    for kind in (*STORE_DOWN, RedisResponseError):
        app.add_exception_handler(kind, _store)

    app.add_exception_handler(Exception, _unexpected)
