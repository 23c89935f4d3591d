"""The simulator's applications: provider routes plus ``/_sim`` control routes.

Plain HTTP (``port``): the WhatsApp Graph API, Google's OAuth2 token endpoint,
FCM over HTTP/1.1, and the control routes. HTTP/2 + TLS (``tls_port``): APNs and
FCM as the real services speak them, with a certificate from a CA kept in
``ca_dir`` (clients trust ``ca_dir/ca.pem``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query

from worker.sim import h2server
from worker.sim.push import PushSim
from worker.sim.state import FaultSpec, SimState
from worker.sim.whatsapp import WhatsAppSim

log = logging.getLogger(__name__)


async def _freeze_survivors(every_s: float = 2.0) -> None:
    """The simulator keeps every request it received (up to 200,000, with their bodies):
    millions of objects that Python's full garbage collections walk again and again, in
    pauses that grew to hundreds of milliseconds. A paused simulator stamps the requests
    that queued meanwhile all at once, which looked like a burst of sends. What survives
    is frozen (left out of later collections) every couple of seconds, after a collection
    that then only walks what came since the last freeze (so no garbage gets frozen)."""
    while True:
        await asyncio.sleep(every_s)
        gc.collect()
        gc.freeze()


def create_sim_app(
    *, tls_host: str = "127.0.0.1", tls_port: int | None = None, ca_dir: Path | None = None
) -> FastAPI:
    state = SimState()
    whatsapp = WhatsAppSim(state)
    push = PushSim(state)
    app = FastAPI(
        title="dispatch provider simulator",
        docs_url="/_sim/docs",
        openapi_url=None,
        lifespan=_lifespan(push, tls_host, tls_port, ca_dir),
    )
    app.state.sim = state
    _add_control_routes(app, state, push)
    # Provider routes last: their path patterns are broad ("/{version}/{id}/messages").
    app.include_router(push.router)
    app.include_router(whatsapp.router)
    return app


def _lifespan(
    push: PushSim, tls_host: str, tls_port: int | None, ca_dir: Path | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """APNs and FCM speak HTTP/2 over TLS: a server of its own beside uvicorn's, for as
    long as the app runs; and the heap freezer (see _freeze_survivors)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server: asyncio.Server | None = None
        if tls_port is not None:
            context, ca_path = h2server.tls_context(ca_dir or Path(".data/sim"), tls_host)
            server = await h2server.serve(push.handle_h2, tls_host, tls_port, context)
            log.warning("APNs/FCM over HTTP/2+TLS on %s:%d (CA: %s)", tls_host, tls_port, ca_path)
        freezer = asyncio.create_task(_freeze_survivors())
        try:
            yield
        finally:
            freezer.cancel()
            if server is not None:
                server.close()

    return lifespan


def _add_control_routes(app: FastAPI, state: SimState, push: PushSim) -> None:
    """``/_sim/…``: what tests and benches ask the simulator (the requests it received,
    its counters) and tell it (faults to inject)."""

    @app.get("/_sim/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/_sim/requests")
    async def requests(
        channel: str | None = None,
        after: Annotated[int, Query(description="only requests with seq greater than this")] = 0,
    ) -> dict[str, Any]:
        items = [
            r
            for r in state.requests
            if r["seq"] > after and (channel is None or r["channel"] == channel)
        ]
        return {"requests": items, "count": len(items)}

    @app.delete("/_sim/requests")
    async def clear_requests() -> dict[str, bool]:
        state.requests.clear()
        return {"ok": True}

    @app.get("/_sim/stats")
    async def stats() -> dict[str, Any]:
        by_channel: dict[str, int] = {}
        for r in state.requests:
            by_channel[r["channel"]] = by_channel.get(r["channel"], 0) + 1
        return {"requests": by_channel, **push.stats()}

    @app.post("/_sim/faults")
    async def add_fault(spec: FaultSpec) -> dict[str, Any]:
        return state.add_fault(spec).model_dump()

    @app.get("/_sim/faults")
    async def list_faults() -> dict[str, Any]:
        return {"faults": [f.model_dump() for f in state.faults]}

    @app.delete("/_sim/faults")
    async def clear_faults() -> dict[str, bool]:
        state.faults.clear()
        return {"ok": True}
