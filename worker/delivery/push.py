"""Send one push message to every device it targets, FCM and APNs at once.

The devices still to do are sent slice by slice (``push_slice_size``): each slice
takes its share of the project's / topic's global rate limit, is marked in flight,
sent, and its results recorded before the next one, so a worker killed mid-send
re-sends at most one slice. Only devices not yet final are sent to, and not
before their provider's Retry-After: a retry after three 503s out of a thousand
tokens sends to those three. A dead token (unregistered, bad, not for this app) is
pruned from its contact with the reason; a payload error never prunes. A device
that runs out of attempts or of age fails and puts the message in the
dead-letter list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence

from worker.codes import Code
from worker.delivery import policy
from worker.delivery.context import DeliveryContext, Outcome, claimed
from worker.errors import AccountError, DeliveryError, RetryableError
from worker.masking import mask_token
from worker.models import Attempt, FcmConfig, MessageStatus, iso
from worker.models.push_payload import PLATFORM_NAMES, Notification, with_texts
from worker.observe import metrics
from worker.providers.push import DeviceResult, Notes
from worker.store import channels, preferences, push
from worker.store.channels import PushConfig
from worker.store.messages import Message
from worker.store.push import FINAL, Device, DeviceOutcome

log = logging.getLogger(__name__)


async def send_push(ctx: DeliveryContext, account_id: str, message_id: str) -> Outcome:
    async with claimed(ctx, account_id, message_id) as message:
        if isinstance(message, Outcome):
            return message
        return await PushRun(ctx, message).run()


# Asked before each slice of a campaign batch: stop now (the campaign was paused or
# cancelled, or the job has run its time)?
Halted = Callable[[], Awaitable[bool]]


class PushRun:
    """One job's pass over a push message's devices."""

    def __init__(
        self, ctx: DeliveryContext, message: Message, halted: Halted | None = None
    ) -> None:
        self.ctx = ctx
        self.message = message
        self.halted = halted
        self.now = time.time()
        self.delivered = self.failed = self.retrying = 0
        self.dead_letter = False
        self.sent_any = False
        self.latency_ms = 0.0
        # Platforms whose credentials the provider refused: platform → reason.
        self.suspended: dict[str, str] = {}
        self.to_suspend: list[str] = []
        # Waits before devices can go again (backoff, Retry-After, rate-limit slots).
        self.next_in_s: list[float] = []

    async def run(self) -> Outcome:
        ctx, message = self.ctx, self.message
        devices = [
            d
            for d in await push.load_devices(ctx.redis, message.account, message.id)
            if d.status not in FINAL
        ]
        if message.deferred_until is not None and message.deferred_until > self.now + 0.5:
            # Put off (quiet hours): a copy of its job that came early waits for its time.
            return Outcome(message.status, message.deferred_until - self.now)
        if message.deferred_until is not None and message.attempts == 0:
            devices = await self._without_opted_out(devices)
        # Past the time its sender gave (not a dead letter) or past the service's maximum age.
        own_expiry = message.expired(self.now)
        expired = own_expiry or message.age_s(self.now) > ctx.settings.push_max_age_s
        ready: list[Device] = []
        for device in devices:
            if expired:
                continue
            if device.not_before is not None and device.not_before > self.now:
                self.next_in_s.append(device.not_before - self.now)
            else:
                ready.append(device)
        if expired:
            await self._expire(devices, own=own_expiry)
        configs = await channels.load_push(ctx.redis, message.account)
        for platform in list(configs):
            reason = await channels.suspension(ctx.redis, message.account, platform)
            if reason is not None:
                self.suspended[platform] = reason
        # Slices of equal size, none above the setting: 260 devices go as 130 + 130, not
        # 250 + 10 (a job waits for its slowest slice; a small one leaves its share idle).
        count = -(-len(ready) // ctx.settings.push_slice_size)
        slices = [
            ready[len(ready) * i // count : len(ready) * (i + 1) // count] for i in range(count)
        ]
        # Several slices at a time (three by default): others are sent while one's results
        # are written, so the provider is never idle behind a Redis round trip.
        gate = asyncio.Semaphore(ctx.settings.push_slices_in_flight)
        deferred = asyncio.Event()

        async def one(devices: list[Device]) -> None:
            async with gate:
                if deferred.is_set():
                    return  # the rate limit said not now: the rest waits for the next run
                if self.halted is not None and await self.halted():
                    self.next_in_s.append(0.0)  # the next run goes on, parks or cancels
                    deferred.set()
                    return
                wait_s = await self._slice(devices, configs)
                if wait_s is not None:
                    self.next_in_s.append(wait_s)
                    deferred.set()

        await asyncio.gather(*(one(devices) for devices in slices))
        return await self._finish()

    async def _slice(
        self, devices: list[Device], configs: dict[str, tuple[PushConfig, str]]
    ) -> float | None:
        """Send one slice; returns a wait when the rate limit says not now."""
        ctx, message = self.ctx, self.message
        groups: dict[str, list[Device]] = defaultdict(list)
        for device in devices:
            groups[device.platform].append(device)
        results: list[DeviceResult] = []
        for platform in [p for p in groups if p not in configs]:
            results.extend(_not_configured(d) for d in groups.pop(platform))
        for platform in [p for p in groups if p in self.suspended]:
            stopped = AccountError(self.suspended[platform], code=Code.CHANNEL_SUSPENDED)
            results.extend(
                DeviceResult(d.platform, d.token, None, stopped, 0.0) for d in groups.pop(platform)
            )
        # Each platform's limit at once; a platform told "not now" keeps its devices for
        # the next run, the others go.
        waits = await asyncio.gather(
            *(
                ctx.limiter.take(*_limit(ctx, configs[platform][0]), cost=len(group))
                for platform, group in groups.items()
            )
        )
        sendable = [
            (p, g) for (p, g), wait in zip(groups.items(), waits, strict=True) if wait is None
        ]
        deferred_s = max((w for w in waits if w is not None), default=None)
        in_flight = [d for _, group in sendable for d in group]
        slice_id = None
        if in_flight:
            slice_id = await push.mark_sending(ctx.redis, message, in_flight, ctx.message_ttl_s)
            self.sent_any = True
        results.extend(await self._send(sendable, configs))
        # Only devices with an answer change; a deferred platform's stay as they were.
        outcomes = self._judge(devices, results)
        await push.record_devices(
            ctx.redis, message, outcomes, time.time(), ctx.message_ttl_s, slice_id
        )
        return deferred_s

    async def _send(
        self, sendable: list[tuple[str, list[Device]]], configs: dict[str, tuple[PushConfig, str]]
    ) -> list[DeviceResult]:
        ctx, message = self.ctx, self.message
        # The caller's collapse id, else the message's own id: the same on every device
        # and every retry of this message, different from any other message's.
        note = notification(message)
        calls = []
        called: list[tuple[str, list[Device]]] = []
        for platform, group in sendable:
            config, version = configs[platform]
            sender = await ctx.push.get(message.account, platform, config, version)
            # A campaign's devices may each carry the notification rendered for their
            # contact (its texts): still one call (one FCM batch) for all of them, each with
            # the message's collapse id and options.
            notes: Notes = note
            if any(d.note for d in group):
                notes = [with_texts(note, d.note) if d.note else note for d in group]
            calls.append(sender.send(notes, [d.token for d in group]))
            called.append((platform, group))
        results: list[DeviceResult] = []
        answers = await asyncio.gather(*calls, return_exceptions=True)
        for (platform, group), batch in zip(called, answers, strict=True):
            if isinstance(batch, BaseException):
                # A client library failing outright (not a per-device answer): nothing is
                # known to have reached the provider, so those devices are tried again.
                log.error("push %s: %s sender failed: %r", message.id, platform, batch)
                failure = RetryableError(
                    f"{type(batch).__name__}: {batch}", code=Code.PROVIDER_ERROR
                )
                results.extend(DeviceResult(d.platform, d.token, None, failure, 0.0) for d in group)
            else:
                results.extend(batch)
                if batch:
                    latency_s = max(r.latency_ms for r in batch) / 1000
                    metrics.PROVIDER_LATENCY.labels(platform).observe(latency_s)
        return results

    def _judge(self, devices: Sequence[Device], results: list[DeviceResult]) -> list[DeviceOutcome]:
        """Each device's new state from its provider answer."""
        by_member = {d.member: d for d in devices}
        outcomes: list[DeviceOutcome] = []
        now = time.time()
        tally: Counter[tuple[str, str, str]] = Counter()  # (metric, platform, label)
        try:
            self._judge_each(by_member, results, outcomes, now, tally)
        finally:
            metrics.count_push(tally)
        return outcomes

    def _judge_each(
        self,
        by_member: dict[str, Device],
        results: list[DeviceResult],
        outcomes: list[DeviceOutcome],
        now: float,
        tally: Counter[tuple[str, str, str]],
    ) -> None:
        for result in results:
            device = by_member[f"{result.platform}:{result.token}"]
            self.latency_ms = max(self.latency_ms, result.latency_ms)
            device.at = now
            if result.error is None:
                outcomes.append(self._delivered(device, result.provider_id, tally))
            else:
                outcomes.append(self._not_delivered(device, result.error, now, tally))

    def _delivered(
        self, device: Device, provider_id: str | None, tally: Counter[tuple[str, str, str]]
    ) -> DeviceOutcome:
        device.attempts += 1
        device.status, device.provider_id = "delivered", provider_id
        device.error = device.code = device.provider_code = None
        device.not_before = None
        self.delivered += 1
        tally["sent", device.platform, ""] += 1
        return DeviceOutcome(device)

    def _not_delivered(
        self,
        device: Device,
        error: DeliveryError,
        now: float,
        tally: Counter[tuple[str, str, str]],
    ) -> DeviceOutcome:
        """The device retries later or has failed, by the same decision as a WhatsApp
        send's."""
        # Missing or refused credentials say nothing about the token itself.
        token_fault = policy.blames_recipient(error)
        if token_fault:
            device.attempts += 1
        # Push does not slow its project's or topic's limit on a quota answer
        # (``penalize``): each device waits out its own Retry-After instead; a push has no
        # recipient pacing (``exhaust_pair``).
        decision = policy.after_error(error, device.attempts, self.ctx.push_retry)
        if decision.suspend and device.platform not in self.suspended:
            self.suspended[device.platform] = (
                f"{PLATFORM_NAMES.get(device.platform, device.platform)} refused this "
                f"account's credentials: {error.reason}"
            )
            self.to_suspend.append(device.platform)
        device.error, device.code, device.provider_code = (
            error.reason,
            error.code,
            error.provider_code,
        )
        if decision.retry_in_s is not None:
            device.status = "retrying"
            device.not_before = now + decision.retry_in_s
            self.next_in_s.append(decision.retry_in_s)
            self.retrying += 1
            tally["retry", device.platform, error.code] += 1
            return DeviceOutcome(device)
        device.status = "failed"
        device.pruned = decision.prune
        device.exhausted = decision.dead_letter
        self.dead_letter |= device.exhausted
        self.failed += 1
        tally["failed", device.platform, ""] += 1
        if device.pruned:
            tally["pruned", device.platform, ""] += 1
            self._log_pruned(device)
        return DeviceOutcome(device, token_fault=token_fault, prune=device.pruned)

    def _log_pruned(self, device: Device) -> None:
        log.info(
            "push %s: pruned %s token %s (%s)",
            self.message.id,
            device.platform,
            mask_token(device.token),
            device.provider_code,
            extra={
                "event": "token.pruned",
                "message_id": self.message.id,
                "account": self.message.account,
                "channel": "push",
                "platform": device.platform,
                "token": mask_token(device.token),
                "code": device.provider_code,
            },
        )

    async def cancel(self) -> Outcome:
        """The campaign was cancelled: the devices not sent to yet end as cancelled."""
        message = self.message
        devices = [
            d
            for d in await push.load_devices(self.ctx.redis, message.account, message.id)
            if d.status not in FINAL
        ]
        outcomes = []
        for device in devices:
            device.status, device.at = "failed", self.now
            device.error, device.code = (
                "Campaign cancelled before this device was sent to",
                Code.CANCELLED,
            )
            outcomes.append(DeviceOutcome(device, token_fault=False))
        await push.record_devices(
            self.ctx.redis, message, outcomes, self.now, self.ctx.message_ttl_s
        )
        status = MessageStatus.SENT if message.delivered else MessageStatus.FAILED
        await push.finish_run(self.ctx.redis, message, None, status, self.ctx.message_ttl_s)
        return Outcome(status)

    async def _without_opted_out(self, devices: list[Device]) -> list[Device]:
        """A put-off push (quiet hours, a local time) checks its contacts' opt-outs again
        when its time comes: the devices of those who opted out meanwhile fail with
        ``recipient_opted_out`` (not a dead letter); the others are returned."""
        message = self.message
        category = preferences.consent_category(message.send_category)
        contact_of = {d.token: d.contact or message.contact_id or "" for d in devices}
        refused = await preferences.opted_out_now(
            self.ctx.redis,
            message.account,
            "push",
            category,
            dict.fromkeys((c for c in contact_of.values() if c), ""),
        )
        if not refused:
            return devices
        outcomes = []
        for device in devices:
            if contact_of[device.token] in refused:
                device.status, device.at = "failed", self.now
                device.error = "The recipient opted out of push meanwhile"
                device.code = Code.RECIPIENT_OPTED_OUT
                outcomes.append(DeviceOutcome(device, token_fault=False))
        self.failed += len(outcomes)
        metrics.count_push(Counter(("failed", o.device.platform, "") for o in outcomes))
        await push.record_devices(
            self.ctx.redis, message, outcomes, self.now, self.ctx.message_ttl_s
        )
        return [d for d in devices if d.status != "failed"]

    async def _expire(self, devices: list[Device], *, own: bool) -> None:
        """Every device still to do fails: past the maximum age a dead letter, past the
        expiry its sender gave (``own``) not (it asked for it to end so)."""
        limit = self.ctx.settings.push_max_age_s
        said = (
            f"Expired at {iso(self.message.expires_at)} before it could be sent"
            if own
            else f"Not sent within {limit:.0f}s"
        )
        outcomes = []
        for device in devices:
            device.status, device.exhausted, device.at = "failed", not own, self.now
            device.error = said + (f"; last error: {device.error}" if device.error else "")
            device.code = Code.EXPIRED
            outcomes.append(DeviceOutcome(device, token_fault=False))
        self.failed += len(outcomes)
        self.dead_letter |= bool(outcomes) and not own
        metrics.count_push(Counter(("failed", o.device.platform, "") for o in outcomes))
        await push.record_devices(
            self.ctx.redis, self.message, outcomes, self.now, self.ctx.message_ttl_s
        )

    async def _finish(self) -> Outcome:
        ctx, message = self.ctx, self.message
        for platform in self.to_suspend:
            await channels.suspend(
                ctx.redis,
                message.account,
                platform,
                self.suspended[platform],
                ctx.settings.account_stop_s,
            )
            log.error(
                "push %s for account %s suspended: %s",
                platform,
                message.account,
                self.suspended[platform],
            )
        attempt = None
        if self.sent_any or self.failed:
            attempt = Attempt(
                attempt=message.attempts + 1,  # the lease makes this job the only counter
                at=time.time(),
                outcome="retry" if self.next_in_s else ("sent" if self.delivered else "failed"),
                delivered=self.delivered,
                failed=self.failed,
                retrying=self.retrying,
                latency_ms=round(self.latency_ms, 1),
            )
        if self.next_in_s:
            # One follow-up for everything still to do: by then every device is due.
            retry_in_s = max(0.0, max(self.next_in_s))
            if attempt is not None:
                attempt.retry_in_s = round(retry_in_s, 3)
            status = (
                MessageStatus.RETRYING if self.sent_any or message.attempts else (message.status)
            )
            await push.finish_run(
                ctx.redis, message, attempt, status, ctx.message_ttl_s, dead_letter=self.dead_letter
            )
            log.info(
                "push %s: %d delivered, %d failed, %d to retry; again in %.1fs",
                message.id,
                self.delivered,
                self.failed,
                self.retrying,
                retry_in_s,
                extra=self._event(attempt, retry_in_s=round(retry_in_s, 3)),
            )
            return Outcome(status, retry_in_s)
        if self.dead_letter:
            metrics.DEAD_LETTERED.labels("push").inc()
        status = MessageStatus.SENT if message.delivered + self.delivered else MessageStatus.FAILED
        await push.finish_run(
            ctx.redis, message, attempt, status, ctx.message_ttl_s, dead_letter=self.dead_letter
        )
        log.info(
            "push %s: %d delivered, %d failed",
            message.id,
            self.delivered,
            self.failed,
            extra=self._event(attempt),
        )
        return Outcome(status)

    def _event(self, attempt: Attempt | None, **fields: object) -> dict[str, object]:
        """The structured fields of a run's log line (see worker.observe.logs)."""
        return {
            "event": "send.dead_letter" if self.dead_letter else "send.attempt",
            "message_id": self.message.id,
            "account": self.message.account,
            "channel": "push",
            "campaign": self.message.campaign,
            "attempt": attempt.attempt if attempt else None,
            "outcome": attempt.outcome if attempt else None,
            "latency_ms": round(self.latency_ms, 1),
            "delivered": self.delivered,
            "failed": self.failed,
            "retrying": self.retrying,
            **fields,
        }


def notification(message: Message) -> Notification:
    """What a push message's devices are sent: its texts, its collapse id (the caller's,
    else the message's own id: the same on every device and every retry of this message,
    different from any other message's) and its delivery options, as stored with it."""
    return Notification(
        title=message.title or "",
        body=message.text or "",
        url=message.url,
        icon=message.icon,
        data=message.data,
        collapse_id=message.collapse_id or message.id,
        priority=message.priority,
        ttl_s=message.ttl_s,
        badge=message.badge,
        sound=message.sound,
        thread_id=message.thread_id,
        image=message.image,
    )


def _limit(ctx: DeliveryContext, config: PushConfig) -> tuple[str, float]:
    """The rate limit a push goes through: per FCM project, per APNs topic."""
    if isinstance(config, FcmConfig):
        return f"fcm:{config.project_id}", config.rate_per_s or ctx.settings.fcm_rate_per_s
    return f"apns:{config.topic}", config.rate_per_s or ctx.settings.apns_rate_per_s


def _not_configured(device: Device) -> DeviceResult:
    name = PLATFORM_NAMES.get(device.platform, device.platform)
    error = DeliveryError(
        f"{name} is not configured for this account", code=Code.PLATFORM_NOT_CONFIGURED
    )
    return DeviceResult(device.platform, device.token, None, error, 0.0)
