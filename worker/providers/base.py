"""The seam between the send algorithm and a provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from worker.models import SendResult, Template, WhatsAppConfig


class WhatsAppProvider(Protocol):
    async def send(self, config: WhatsAppConfig, payload: dict[str, Any]) -> SendResult:
        """Send one Graph API message body; raise a ``worker.errors.DeliveryError`` on failure."""
        ...

    def templates(self, config: WhatsAppConfig) -> AsyncIterator[Template]:
        """Every message template of the account's WABA, following the paging."""
        ...
