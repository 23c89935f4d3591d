"""What a push adapter returns for each device, and the seam the send algorithm uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from worker.errors import DeliveryError
from worker.models.push_payload import Notification


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


class ProviderTokenStore(Protocol):
    """Where a signing key's current provider token (APNs' JWT) is shared by every process
    that sends with the key: Apple refuses a key's new token sooner than 20 minutes after
    the last one, so processes must not each sign their own."""

    async def load(self, key: str) -> tuple[str, float] | None:
        """The key's stored token and when it was issued (epoch seconds), if any."""
        ...

    async def replace(
        self, key: str, old: str | None, new: str, issued_at: float
    ) -> tuple[str, float]:
        """Store ``new`` unless the stored token is no longer ``old`` (another process got
        there first); return the token stored now."""
        ...
