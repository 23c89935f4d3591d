"""Send one push message to every device it targets, FCM and APNs at once.

Only devices not yet final are sent to: a retry after three 503s out of a
thousand tokens sends to those three. A dead token (unregistered, bad, not for
this app) is pruned from its contact with the reason; a payload error never
prunes. Each attempt's results land in Redis in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from worker.delivery.context import DeliveryContext, Outcome, load_unfinished
from worker.errors import DeliveryError, InvalidTokenError, RetryableError
from worker.masking import mask_token
from worker.models import Attempt, MessageStatus
from worker.providers.push import DeviceResult
from worker.push_payload import Notification
from worker.store import channels, messages, push
from worker.store.push import FINAL, Device, DeviceOutcome

log = logging.getLogger(__name__)

PLATFORM_NAMES = {"fcm": "FCM", "apns": "APNs"}


def _not_configured(device: Device) -> DeviceResult:
    name = PLATFORM_NAMES.get(device.platform, device.platform)
    error = DeliveryError(
        f"{name} is not configured for this account", code="platform_not_configured"
    )
    return DeviceResult(device.platform, device.token, None, error, 0.0)


async def send_push(ctx: DeliveryContext, account_id: str, message_id: str) -> Outcome:
    message = await load_unfinished(ctx, account_id, message_id)
    if isinstance(message, Outcome):
        return message

    devices = [
        d
        for d in await push.load_devices(ctx.redis, account_id, message_id)
        if d.status not in FINAL
    ]
    configs = await channels.load_push(ctx.redis, account_id)
    number = await messages.begin_attempt(ctx.redis, account_id, message_id)
    note = Notification(
        title=message.title or "",
        body=message.text or "",
        url=message.url,
        icon=message.icon,
        data=message.data,
    )

    by_platform: dict[str, list[Device]] = defaultdict(list)
    for device in devices:
        by_platform[device.platform].append(device)
    results: list[DeviceResult] = []
    calls, called = [], []
    for platform, group in by_platform.items():
        if platform not in configs:
            results.extend(_not_configured(d) for d in group)
            continue
        config, version = configs[platform]
        sender = await ctx.push.get(account_id, platform, config, version)
        calls.append(sender.send(note, [d.token for d in group]))
        called.append(group)
    for group, batch in zip(
        called, await asyncio.gather(*calls, return_exceptions=True), strict=True
    ):
        if isinstance(batch, BaseException):
            # A client library failing outright (not a per-device answer): nothing is
            # known to have reached the provider, so those devices are tried again.
            log.exception(
                "push %s: %s sender failed", message_id, group[0].platform, exc_info=batch
            )
            failure = RetryableError(f"{type(batch).__name__}: {batch}", code="provider_error")
            results.extend(DeviceResult(d.platform, d.token, None, failure, 0.0) for d in group)
        else:
            results.extend(batch)

    exhausted = ctx.push_retry.exhausted(number)
    now = time.time()
    outcomes: list[DeviceOutcome] = []
    retry_after_s: float | None = None
    by_member = {d.member: d for d in devices}
    for result in results:
        device = by_member[f"{result.platform}:{result.token}"]
        device.attempts += 1
        device.at = now
        error = result.error
        if error is None:
            device.status, device.provider_id = "delivered", result.provider_id
            device.error = device.code = device.provider_code = None
            outcomes.append(DeviceOutcome(device, counted=True))
            continue
        device.error, device.code, device.provider_code = (
            error.reason,
            error.code,
            error.provider_code,
        )
        if isinstance(error, RetryableError) and not exhausted:
            device.status = "retrying"
            floor = error.retry_after_s or 0.0
            retry_after_s = max(retry_after_s or 0.0, floor)
            outcomes.append(DeviceOutcome(device, counted=False))
            continue
        device.status = "failed"
        prune = isinstance(error, InvalidTokenError)
        device.pruned = prune
        # A platform the account never configured says nothing about the token itself.
        counted = error.code != "platform_not_configured"
        outcomes.append(DeviceOutcome(device, counted=counted, prune=prune))

    delivered = sum(1 for o in outcomes if o.device.status == "delivered")
    failed = sum(1 for o in outcomes if o.device.status == "failed")
    retrying = sum(1 for o in outcomes if o.device.status == "retrying")
    attempt = Attempt(
        attempt=number,
        at=now,
        outcome="retry" if retrying else ("sent" if delivered else "failed"),
        delivered=delivered,
        failed=failed,
        retrying=retrying,
        latency_ms=round(max((r.latency_ms for r in results), default=0.0), 1),
    )
    if retrying:
        attempt.retry_in_s = round(ctx.push_retry.delay_s(number, retry_after_s), 3)
        status = MessageStatus.RETRYING
    else:
        total_delivered = message.delivered + delivered
        status = MessageStatus.SENT if total_delivered else MessageStatus.FAILED
    await push.record_attempt(ctx.redis, message, attempt, outcomes, status, ctx.message_ttl_s)
    for o in outcomes:
        if o.prune:
            log.info(
                "push %s: pruned %s token %s (%s)",
                message_id,
                o.device.platform,
                mask_token(o.device.token),
                o.device.provider_code,
            )
    log.info(
        "push %s attempt %d: %d delivered, %d failed, %d to retry",
        message_id,
        number,
        delivered,
        failed,
        retrying,
    )
    return Outcome(status, attempt.retry_in_s)
