"""A route class for the send endpoints: their common case without FastAPI's generic path.

Profiling the API under load (py-spy, ``make bench``'s closed loop) showed FastAPI's
request handling (reading and decoding the body with ``json.loads``, validating the
resulting dict, solving the dependency graph, the exit stacks) costing about as much as
the send itself. A send endpoint has one body model and one dependency (``Sender``), so
the common case (a JSON body that validates) is done here directly: the bytes go
straight to pydantic's Rust JSON parser, then the endpoint runs.

Anything else (a body that fails validation, another content type) goes to FastAPI's
own handler, which gives exactly the errors it always gave (in the same order: a body
that is not JSON before a bad key, a bad key before a bad field). The OpenAPI document
is generated from the endpoint's signature as for any route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast, get_type_hints

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from worker.api.deps import Sender, sender

Endpoint = Callable[[BaseModel, Sender], Awaitable[Response]]


def _json_content(request: Request) -> bool:
    for name, value in request.scope["headers"]:
        if name == b"content-type":
            kind: bytes = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return True  # FastAPI reads a body without a content type as JSON too


class SendRoute(APIRoute):
    """For a route whose endpoint is ``(body: SomeModel, caller: SenderDep)``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        generic = super().get_route_handler()
        model = get_type_hints(self.endpoint)["body"]
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{self.path}: a SendRoute's endpoint takes `body: SomeModel`")
        endpoint = cast(Endpoint, self.endpoint)

        async def handle(request: Request) -> Response:
            raw = await request.body()  # kept on the request: the generic path reads it again
            if not raw or not _json_content(request):
                return await generic(request)
            try:
                body = model.model_validate_json(raw)
            except ValidationError:
                return await generic(request)
            return await endpoint(body, await sender(request))

        return handle
