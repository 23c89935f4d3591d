"""The send endpoints' common case (and the WhatsApp callback's POST), served in front
of the FastAPI application.

Profiling the API under load (py-spy, ``make bench``'s closed loop) showed the
framework's layers costing more than the send itself: FastAPI's request handling
(decoding the body with ``json.loads``, validating the dict, solving dependencies, exit
stacks) and, once that was cut, the middleware chain and the router (error and
telemetry middlewares, the body-limit wrapper, the exit-stack middleware, route
matching, the per-route wrappers): about a quarter of the API's CPU per send.

A send route has one body model and one dependency (``Sender``), and its common case
is a JSON body that validates. ``SendFastPath`` is an ASGI application in front of
FastAPI that serves exactly that case for the routes declared with ``SendRoute``: the
body's bytes go straight to pydantic's Rust JSON parser, then the endpoint runs, and its
errors (a ``Rejected``, Redis down, a bug) become responses through the application's own
exception handlers. Anything else (a body that does not validate, another content type,
any other path or method) is passed, body included, to the FastAPI application, which
gives exactly the errors it always gave (in the same order: a body that is not JSON
before a bad key, a bad key before a bad field). Nothing with a side effect runs before
that hand-over, so no request is ever served twice. The OpenAPI document comes from the
routes as for any route. (A middleware meant for every request goes around this app, in
``serve_app``: one added to the FastAPI application would not see the sends.)

A "plain" route is served whole the same way: its own endpoint function called with the
request, its errors through the application's handlers. The WhatsApp callback is one:
Meta posts two or three status reports per message sent, and through FastAPI each cost
the API a third more CPU (docs/performance.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast, get_type_hints

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ValidationError
from starlette.types import Message, Receive, Scope, Send

from worker.api.deps import Sender, SenderDep, sender

Endpoint = Callable[[BaseModel, Sender], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]
# A POST route served whole here: it reads the request itself (the WhatsApp callback,
# which verifies the raw body's signature and has no body model).
PlainEndpoint = Callable[[Request], Awaitable[Response]]


class SendRoute(APIRoute):
    """A route whose endpoint is ``(body: SomeModel, caller: SenderDep)``: FastAPI serves
    it as usual, and ``SendFastPath`` serves its common case without FastAPI."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.body_model: type[BaseModel] = _checked_model(path, endpoint, kwargs)
        self.send_endpoint = cast(Endpoint, endpoint)


def _checked_model(
    path: str, endpoint: Callable[..., Any], kwargs: dict[str, Any]
) -> type[BaseModel]:
    """The body model of a send endpoint, whose signature must be exactly what the fast path
    calls, ``(body: SomeModel, caller: SenderDep)``: checked when the application is built,
    so that a send route that grows a dependency fails at start, not as a 500 per request."""
    hints = get_type_hints(endpoint, include_extras=True)
    names = list(inspect.signature(endpoint).parameters)
    model = hints.get("body")
    problems = []
    if names[:1] != ["body"] or not (isinstance(model, type) and issubclass(model, BaseModel)):
        problems.append("its first parameter must be `body: SomeModel`")
    if len(names) != 2 or hints.get(names[1]) != SenderDep:
        problems.append("its only other parameter must be `caller: SenderDep`")
    if kwargs.get("dependencies"):
        problems.append("it may not declare route dependencies")
    if problems:
        raise TypeError(
            f"{path}: the send fast path cannot serve this route: " + "; ".join(problems)
        )
    return cast(type[BaseModel], model)


def _json_content(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            kind: bytes = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return True  # FastAPI reads a body without a content type as JSON too


class SendFastPath:
    """ASGI: the valid JSON requests of the ``SendRoute`` routes of ``routers`` here, and
    every POST to a ``plain`` path (the application's own endpoint for it, called with the
    request), everything else to ``app`` (which includes those routes, without a prefix)."""

    def __init__(
        self,
        app: FastAPI,
        routers: list[APIRouter],
        plain: dict[str, PlainEndpoint] | None = None,
    ) -> None:
        self.app = app
        self.routes = {
            route.path: route
            for router in routers
            for route in router.routes
            if isinstance(route, SendRoute) and "POST" in (route.methods or ())
        }
        self.plain = dict(plain or {})
        served = app.openapi()["paths"]
        for path in [*self.routes, *self.plain]:
            if "post" not in served.get(path, {}):
                raise RuntimeError(f"{path}: the application does not serve this route")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" and scope["method"] == "POST" else None
        if path is None or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        route, plain = self.routes.get(path), self.plain.get(path)
        if route is None and plain is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        replayed = replay(body, receive)
        if plain is not None:
            await self._serve(scope, replayed, send, plain)
            return
        assert route is not None
        if not body or not _json_content(scope):
            await self.app(scope, replayed, send)
            return
        try:
            parsed = route.body_model.model_validate_json(body)
        except ValidationError:
            await self.app(scope, replayed, send)  # FastAPI words the error
            return
        endpoint = route.send_endpoint

        async def call(request: Request) -> Response:
            return await endpoint(parsed, await sender(request))

        await self._serve(scope, replayed, send, call)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, endpoint: PlainEndpoint
    ) -> None:
        """Call ``endpoint`` with the request; its errors become the responses the
        application's own handlers make of them."""
        scope["app"] = self.app  # as Starlette sets it: the request's `app` is FastAPI's
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as exc:
            response = await self._handler(exc)(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler:
        """The application's handler for ``exc`` (``errors.install`` has one for
        ``Exception``, so there always is one)."""
        for kind in type(exc).__mro__:
            handler = self.app.exception_handlers.get(kind)
            if handler is not None:
                return cast(Handler, handler)
        raise exc


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for whoever reads the request after us: the body once, then the
    connection's own messages (a disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
