"""What the simulator received, and the faults it has been told to inject."""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any, Literal

from pydantic import BaseModel, Field

FaultKind = Literal["error", "http", "timeout", "delay", "goaway", "drop"]


class FaultSpec(BaseModel):
    """``POST /_sim/faults``: the next ``count`` matching requests misbehave.

    - ``error``: the provider's own error envelope for ``code`` (e.g. 130429, 131026);
    - ``http``: a bare ``http_status`` with ``body`` (e.g. a 500 from a load balancer);
    - ``timeout``: hold the request ``delay_s`` seconds, then answer 504 without sending;
    - ``delay``: hold the request ``delay_s`` seconds, then process it normally;
    - ``goaway`` (HTTP/2 port): answer with GOAWAY saying the request's stream and the ones
      after it were not processed, and close the connection once the streams below it are
      answered (what a server being drained does);
    - ``drop`` (HTTP/2 port): close the TCP connection at once, every request on it in
      flight unanswered (a crashed front end, a NAT timeout).
    ``count`` null means until the fault is cleared.
    """

    channel: Literal["whatsapp", "fcm", "apns"] = "whatsapp"
    kind: FaultKind = "error"
    # WhatsApp: an error code (131026); FCM: an errorCode (UNREGISTERED); APNs: a reason
    # (Unregistered). The HTTP status defaults to what the provider uses for it.
    code: int | str | None = None
    http_status: int | None = None
    body: str | None = None
    retry_after_s: float | None = None
    delay_s: float = 30.0
    count: int | None = Field(default=1, ge=1)
    # Active for this many seconds from creation (a storm), whatever the count.
    for_s: float | None = Field(default=None, gt=0)
    # Only every n-th matching request is affected (1: all of them).
    every: int = Field(default=1, ge=1)
    # Which requests it applies to (WhatsApp: phone_number_id, to; FCM: project_id, token;
    # APNs: topic, token); an empty match applies to every request of the channel.
    match: dict[str, str] = Field(default_factory=dict)


class Fault(FaultSpec):
    id: int
    created_at: float
    used: int = 0
    seen: int = 0


class SimState:
    def __init__(self, max_requests: int = 200_000) -> None:
        self.requests: deque[dict[str, Any]] = deque(maxlen=max_requests)
        self.faults: list[Fault] = []
        self._seq = itertools.count(1)
        self._fault_ids = itertools.count(1)

    def record(self, channel: str, **fields: Any) -> dict[str, Any]:
        entry = {"seq": next(self._seq), "at": time.time(), "channel": channel, **fields}
        self.requests.append(entry)
        return entry

    def add_fault(self, spec: FaultSpec) -> Fault:
        fault = Fault(id=next(self._fault_ids), created_at=time.time(), **spec.model_dump())
        self.faults.append(fault)
        return fault

    def take_fault(self, channel: str, attributes: dict[str, str]) -> Fault | None:
        """The first fault that matches this request, counted as used."""
        now = time.time()
        for fault in list(self.faults):
            if fault.channel != channel:
                continue
            if fault.for_s is not None and now > fault.created_at + fault.for_s:
                self.faults.remove(fault)
                continue
            if any(attributes.get(k) != v for k, v in fault.match.items()):
                continue
            fault.seen += 1
            if (fault.seen - 1) % fault.every:
                continue
            fault.used += 1
            if fault.count is not None and fault.used >= fault.count:
                self.faults.remove(fault)
            return fault
        return None

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()
