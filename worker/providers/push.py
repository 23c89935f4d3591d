"""What a push adapter returns for each device, and the seam the send algorithm uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from worker.errors import DeliveryError
from worker.push_payload import Notification


@dataclass(frozen=True)
class DeviceResult:
    platform: str
    token: str
    provider_id: str | None  # FCM's message name, or APNs' apns-id
    error: DeliveryError | None
    latency_ms: float

    @property
    def ok(self) -> bool:
        return self.error is None


# One notification for every token, or one per token (a campaign's, rendered per contact).
Notes = Notification | Sequence[Notification]


def note_at(notes: Notes, index: int) -> Notification:
    return notes if isinstance(notes, Notification) else notes[index]


class PushSender(Protocol):
    async def send(self, note: Notes, tokens: Sequence[str]) -> list[DeviceResult]:
        """Send to every token concurrently (``note`` alike for all, or one per token);
        one result per token, in order."""
        ...

    async def close(self) -> None: ...
