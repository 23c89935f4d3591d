"""Push clients per account, made once per worker process and rebuilt when the account's
configuration changes (its ``version``), never per send."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from worker.config import DEFAULT_FCM_SENDER
from worker.models import ApnsConfig, FcmConfig
from worker.providers.push import ProviderTokenStore, PushSender
from worker.store.channels import APNS, FCM, PushConfig


def build_sender(
    platform: str,
    config: PushConfig,
    timeout_s: float,
    apns_max_in_flight: int,
    token_store: ProviderTokenStore | None = None,
    fcm_batch_size: int = 50,
    fcm_sender: str = DEFAULT_FCM_SENDER,
) -> PushSender:
    # Imported here: firebase-admin and aioapns load only in processes that push.
    if platform == FCM:
        assert isinstance(config, FcmConfig)
        if fcm_sender == "lean":
            from worker.providers.fcm_lean import LeanFcmSender

            # No calls of `fcm_batch_size`: a slice's requests go at once.
            return LeanFcmSender(config, timeout_s=timeout_s)
        from worker.providers.fcm import FcmSender

        return FcmSender(config, timeout_s=timeout_s, batch_size=fcm_batch_size)
    if platform == APNS:
        from worker.providers.apns import ApnsSender

        assert isinstance(config, ApnsConfig)
        return ApnsSender(
            config, timeout_s=timeout_s, max_in_flight=apns_max_in_flight, token_store=token_store
        )
    raise ValueError(f"unknown push platform {platform!r}")


@dataclass
class PushClients:
    timeout_s: float
    apns_max_in_flight: int = 500
    # Where APNs provider tokens are shared with the other processes (Redis in a worker).
    token_store: ProviderTokenStore | None = None
    fcm_batch_size: int = 50
    fcm_sender: str = DEFAULT_FCM_SENDER
    # How a sender is made; tests swap in fakes here.
    factory: Callable[
        [str, PushConfig, float, int, ProviderTokenStore | None, int, str], PushSender
    ] = build_sender
    _senders: dict[tuple[str, str], tuple[str, PushSender]] = field(default_factory=dict)

    async def get(
        self, account_id: str, platform: str, config: PushConfig, version: str
    ) -> PushSender:
        cached = self._senders.get((account_id, platform))
        if cached is not None and cached[0] == version:
            return cached[1]
        if cached is not None:
            await cached[1].close()
        fcm_sender = (isinstance(config, FcmConfig) and config.sender) or self.fcm_sender
        sender = self.factory(
            platform,
            config,
            self.timeout_s,
            self.apns_max_in_flight,
            self.token_store,
            self.fcm_batch_size,
            fcm_sender,
        )
        self._senders[(account_id, platform)] = (version, sender)
        return sender

    async def close(self) -> None:
        for _, sender in self._senders.values():
            await sender.close()
        self._senders.clear()
