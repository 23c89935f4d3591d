"""The simulator's HTTP application: provider routes plus ``/_sim`` control routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query

from worker.sim.state import FaultSpec, SimState
from worker.sim.whatsapp import WhatsAppSim


def create_sim_app() -> FastAPI:
    state = SimState()
    whatsapp = WhatsAppSim(state)
    app = FastAPI(title="dispatch provider simulator", docs_url="/_sim/docs", openapi_url=None)
    app.state.sim = state

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

    # Provider routes last: their path patterns are broad ("/{version}/{id}/messages").
    app.include_router(whatsapp.router)
    return app
