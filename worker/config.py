"""Every knob of the service, read from the environment (prefix ``DISPATCH_``).

This is the only module that reads the environment: the rest of the code takes a
``Settings`` object, and ``child_environment`` hands the same values on to the
processes that ``dispatch up`` starts.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_MEMORY_SIZE = re.compile(r"\d+(?:[kmg]b?)?")


# The FCM senders `fcm_sender` (and an account's own choice) choose between, and the
# default: our HTTP/2 transport, since it met its targets against firebase-admin's own
# client (docs/fcm-lean.md: ~0.15x the CPU per message, campaigns ~2.8x as fast).
FcmSenderName = Literal["firebase-admin", "lean"]
FCM_SENDERS: tuple[str, ...] = get_args(FcmSenderName)
DEFAULT_FCM_SENDER: FcmSenderName = "lean"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCH_", extra="ignore")

    # Redis is both the broker and the system of record. When unset, the service
    # uses the embedded Valkey that `dispatch up` starts in `data_dir`.
    redis_url: str | None = None
    data_dir: Path = Path(".data")
    embedded_redis_port: int = 6390
    # Redis Sentinel (failover): "host:port,host:port" and the master's name. When set,
    # where Redis is comes from the sentinels; redis_url then only gives the password and db.
    redis_sentinels: str = ""
    redis_sentinel_master: str = "mymaster"
    redis_max_connections: int = 512
    # The embedded Valkey's memory limit ("512mb", "2gb", bytes; 0 or empty: none), with
    # noeviction: a full store refuses writes (the API answers 503 store_full, workers
    # wait) instead of evicting queued messages. The compose file's Redis takes the same
    # variable; a Redis of your own keeps its own configuration.
    redis_maxmemory: str = "512mb"
    redis_socket_timeout_s: float = 10.0

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # The send routes' common case served without FastAPI's layers (worker/api/send_route.py;
    # ~a quarter of the API's CPU per send). Off: every request goes through FastAPI, with
    # the same answers (the integration tests check both).
    api_send_fast_path: bool = True
    # Request bodies: 1 MiB, ample for any send or contact (413 beyond, before reading on);
    # the contact import (CSV streamed to a spool file) its own.
    api_max_body_bytes: int = Field(default=1 << 20, gt=0)
    import_max_body_bytes: int = Field(default=256 << 20, gt=0)
    # Requests per second per API key, all API processes together (GCRA in Redis; bursts
    # of `api_key_burst_s` seconds' worth); 0: no limit. 429 with Retry-After beyond.
    api_key_rate_per_s: float = Field(default=100.0, ge=0)
    api_key_burst_s: float = Field(default=2.0, gt=0)
    # How long a send request waits for the worker's outcome before answering 202.
    send_wait_s: float = Field(default=10.0, ge=0.0, le=60.0)

    # Defaults for channels configured without an explicit --base-url.
    whatsapp_base_url: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v21.0"
    provider_timeout_s: float = Field(default=10.0, gt=0)
    provider_connect_timeout_s: float = Field(default=5.0, gt=0)
    provider_max_connections: int = 100
    # APNs requests in flight per account and worker process (HTTP/2 streams).
    apns_max_in_flight: int = 500
    # FCM messages per send_each_async call (calls of a slice go one after another): fewer
    # streams open at once cost firebase-admin's HTTP/2 client less CPU per message.
    fcm_batch_size: int = Field(default=50, ge=1, le=500)
    # Which FCM sender: firebase-admin over our HTTP/2 transport ("lean",
    # worker/providers/fcm_lean.py; docs/fcm-lean.md), or firebase-admin's own (httpx).
    fcm_sender: FcmSenderName = DEFAULT_FCM_SENDER

    # Retries: exponential backoff with full jitter, Retry-After honoured as a floor. A send
    # that runs out of attempts or of age goes to the dead-letter list.
    whatsapp_max_attempts: int = Field(default=5, ge=1)
    push_max_attempts: int = Field(default=5, ge=1)
    whatsapp_max_age_s: float = Field(default=6 * 3600, gt=0)
    push_max_age_s: float = Field(default=6 * 3600, gt=0)
    # A WhatsApp send that went out and got no answer (a read timeout, a connection lost
    # while waiting) may have been delivered. When the account's number posts status
    # webhooks to us, its next attempt waits this long for the "sent" report that would
    # say so (matched by biz_opaque_callback_data) instead of sending it again. 0: retry
    # at once, at the risk of a second copy.
    whatsapp_unconfirmed_wait_s: float = Field(default=30.0, ge=0)
    retry_base_delay_s: float = Field(default=1.0, gt=0)
    retry_max_delay_s: float = Field(default=300.0, gt=0)
    # Delays up to this go through a Celery countdown; longer ones wait in Redis (the
    # delayed set) until `dispatch beat` puts them back on the queue.
    countdown_max_s: float = Field(default=5.0, ge=0)
    # A message no job has touched this long after it was stored has lost its job (the
    # API crashed or its publish failed): the beat publishes it again.
    unstarted_after_s: float = Field(default=300.0, gt=0)
    beat_interval_s: float = Field(default=0.2, gt=0)

    # After a provider refuses an account's credentials (expired token, locked account),
    # its sends on that channel stop for this long, or until it is configured again.
    account_stop_s: float = Field(default=300.0, gt=0)

    # Global rate limits per provider credential (GCRA in Redis), enforced at
    # `rate_limit_headroom` of the rate to absorb network jitter. A send waits for its
    # slot up to `rate_limit_max_wait_s`; a longer wait reschedules it.
    whatsapp_rate_per_s: float = Field(default=80.0, gt=0)
    fcm_rate_per_s: float = Field(default=10_000.0, gt=0)  # 600,000 / min per project
    apns_rate_per_s: float = Field(default=5_000.0, gt=0)
    # Pacing per WhatsApp recipient, as Meta allows it: about one message per 6 s, in
    # bursts of up to 45 (error 131056 beyond). 0 turns it off.
    whatsapp_pair_rate_per_s: float = Field(default=1 / 6, ge=0)
    whatsapp_pair_burst: int = Field(default=45, ge=1)
    rate_limit_headroom: float = Field(default=0.95, gt=0, le=1)
    rate_limit_max_wait_s: float = Field(default=2.0, ge=0)
    rate_limit_penalty_s: float = Field(default=30.0, ge=0)
    # Encrypts provider credentials at rest (worker.store.secrets): Fernet keys, comma-
    # separated, the first one current. Unset: <data_dir>/secret.key (made by `dispatch up`).
    secret_key: SecretStr | None = None

    # URLs a tenant gives (automation webhook steps) are called only on public addresses;
    # these networks are allowed too (comma-separated CIDRs, e.g. an internal receiver).
    outbound_allow: str = ""
    # One deadline for such a request, body read included, and the most of its answer read.
    outbound_deadline_s: float = Field(default=10.0, gt=0)
    outbound_max_response_bytes: int = Field(default=64 * 1024, gt=0)

    # Event webhooks: the waits between a delivery's attempts (seconds, comma-separated; the
    # default makes 8 attempts over about 28 hours), how many requests to one endpoint at
    # once, and how long an endpoint may fail without a success before it is disabled.
    webhook_retry_schedule_s: str = "5,300,1800,7200,18000,36000,36000"
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    # Deliveries one endpoint may have waiting (queued or between attempts); past it the
    # oldest are dropped, marked and counted. ~0.8 KB of Redis each: 50,000 ≈ 40 MB.
    webhook_backlog_max: int = Field(default=50_000, ge=100, le=1_000_000)
    webhook_disable_after_s: float = Field(default=5 * 86_400, gt=0)
    # How often each process re-reads which accounts have an active endpoint (only those
    # write events): a new endpoint gets events of results recorded after about this long.
    webhook_subscribers_refresh_s: float = Field(default=2.0, gt=0, le=60)
    # Sends come first. While the service sends more than webhook_busy_sends_per_s messages
    # a second (a campaign), each webhook sender process holds to this share of one CPU as
    # long as its endpoint's backlog is under half of webhook_backlog_max, and catches up
    # at full speed once the sending slows (docs/webhooks.md). 1: keep pace with the sends
    # whatever it costs them (on 2 cores, a campaign ~25 % slower).
    webhook_busy_cpu_share: float = Field(default=0.05, gt=0, le=1)
    webhook_busy_sends_per_s: float = Field(default=100.0, ge=0)

    # Devices sent per slice of a push job, and slices in flight at once; results are
    # recorded after each slice, so a worker killed mid-send re-sends at most
    # size x in-flight devices of each job it was running. Slices of a job are of equal
    # size (260 devices go as 130 + 130): a job waits for its slowest (docs/fcm-lean.md).
    # Three in flight: with two, a process's slices tended to end together, and while both
    # were recorded and the next ones prepared the provider had nothing of ours to work
    # on (measured in docs/fcm-lean.md).
    push_slice_size: int = Field(default=125, ge=1)
    push_slices_in_flight: int = Field(default=3, ge=1)

    # Campaigns: contacts per batch job (on the `bulk` queue), WhatsApp sends in flight per
    # batch job, and how long one job runs before it hands the rest to a fresh job (so
    # a pause or a cancel is seen within seconds and no job nears the time limit). A push
    # batch of 1,000 one-device contacts is eight slices of 125, three in flight while
    # the others' results are written, and a job's fixed costs (its claim, the broker's
    # round trips) are shared by four times the devices of a batch of 250, which was one
    # slice: the provider sat idle between a process's jobs (docs/fcm-lean.md).
    campaign_batch_size: int = Field(default=1000, ge=1, le=5000)
    campaign_whatsapp_in_flight: int = Field(default=16, ge=1)
    campaign_job_max_s: float = Field(default=20.0, gt=0)

    # Celery on Redis: a job not acked within the visibility timeout is given to another
    # worker. Each worker's heartbeat marks the jobs it holds as seen every 2 s
    # (worker.runtime.heartbeat), so this bounds how long the jobs of a worker that died wait,
    # not how long a job may run.
    visibility_timeout_s: int = Field(default=10, ge=6)
    # At least 2 s: the soft limit (a second or more before it) must leave a campaign job
    # some time to run (campaign_job_run_s), or it would hand on without sending.
    task_time_limit_s: int = Field(default=120, ge=2)
    # A job's lease on its message (batch, walk, run) lives this long unless the job
    # renews it (it does, three times per time to live, while it runs): the job delivered
    # again after a crash takes over within this of the crash.
    lease_ttl_s: float = Field(default=6.0, ge=1.0)
    # A job whose worker process dies this many times while running it (a segfault, the
    # OOM killer, a limit of the machine) is quarantined, not given back once more.
    job_max_worker_losses: int = Field(default=3, ge=1)
    worker_concurrency: int = 2
    worker_prefetch_multiplier: int = 1

    # Device tokens: one with no delivery (nor registration) in `push_token_max_idle_days`
    # is no longer sent to (FCM expires Android tokens inactive for 270 days); 0 keeps
    # every token. `dispatch tokens stats --stale` lists those idle for
    # `push_token_stale_days` (FCM calls a token stale after a month without activity).
    push_token_max_idle_days: float = Field(default=270, ge=0)
    push_token_stale_days: float = Field(default=30, gt=0)

    message_ttl_s: int = 30 * 24 * 3600
    # A free-form WhatsApp message is only allowed this long after the customer wrote.
    whatsapp_window_s: int = 24 * 3600

    # `dispatch up` starts a child (Valkey too) again when it exits on its own: after
    # base, 2 x base, 4 x base … up to max seconds; a child that had stayed up reset_s
    # starts over at base. A child that exits max_restarts times within
    # restart_window_s is crash-looping: the whole stack stops, since restarting it
    # again would only hide the fault.
    supervisor_backoff_base_s: float = Field(default=1.0, gt=0)
    supervisor_backoff_max_s: float = Field(default=30.0, gt=0)
    supervisor_backoff_reset_s: float = Field(default=60.0, gt=0)
    supervisor_max_restarts: int = Field(default=5, ge=1)
    supervisor_restart_window_s: float = Field(default=60.0, gt=0)

    sim_host: str = "127.0.0.1"
    sim_port: int = 8100
    sim_tls_port: int = 8101

    log_level: str = "INFO"
    # One JSON object per line (for a log shipper), or human-readable lines. Unset: JSON
    # unless stderr is a terminal.
    log_json: bool | None = None

    # Flower (`dispatch flower`): basic auth as "user:password" is required; there is no
    # default password. Task history is bounded to `flower_max_tasks` tasks.
    flower_host: str = "127.0.0.1"
    flower_port: int = 5555
    flower_basic_auth: SecretStr | None = None
    flower_max_tasks: int = Field(default=10_000, gt=0)

    # The API's /metrics: totals only unless tenant labels (accounts, campaigns,
    # automations) are asked for; behind `Authorization: Bearer <token>` when one is set.
    metrics_tenant_labels: bool = False
    metrics_token: SecretStr | None = None
    # The interactive API docs (/docs, /redoc, /openapi.json): off unless asked for.
    api_docs: bool = False

    # Prometheus: a worker group serves /metrics on `dispatch worker --metrics-port`
    # (default this; 0: none). `dispatch up` gives its workers metrics_port_base + 1, + 2, + 3.
    worker_metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_port_base: int = 9100

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _schedule(cls, value: str) -> str:
        waits = [float(part) for part in value.split(",") if part.strip()]
        if not waits or any(w < 0 for w in waits) or len(waits) > 20:
            raise ValueError("1 to 20 non-negative numbers of seconds, comma-separated")
        return value

    @property
    def task_soft_time_limit_s(self) -> int:
        """Celery's soft time limit: a moment before the hard one, for the task to give its
        job back."""
        return self.task_time_limit_s - max(1, min(10, self.task_time_limit_s // 4))

    @property
    def campaign_job_run_s(self) -> float:
        """How long a campaign job runs before handing on: ``campaign_job_max_s``, but never
        so long that a slice or message started just before it stops (it has its answers
        within ``provider_timeout_s``, then writes them: a second allowed) runs into the
        soft time limit, which interrupts the job mid-send (its devices go again, and the
        signal may land in a Redis write). The fault tests' stack (limit 8 s, soft 6 s,
        provider timeout 3 s) gets 2 s. A limit too short for that gets a quarter of the
        soft one."""
        soft = self.task_soft_time_limit_s
        return min(self.campaign_job_max_s, max(soft - self.provider_timeout_s - 1, soft / 4))

    @property
    def webhook_retry_waits_s(self) -> tuple[float, ...]:
        return tuple(
            float(part) for part in self.webhook_retry_schedule_s.split(",") if part.strip()
        )

    @field_validator("redis_maxmemory")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        """A size as Valkey reads one (bytes, or with k/kb/m/mb/g/gb); "" means none."""
        value = value.strip().lower() or "0"
        if not _MEMORY_SIZE.fullmatch(value):
            raise ValueError(
                f"DISPATCH_REDIS_MAXMEMORY: {value!r} is not a size such as 512mb, 2gb or 0"
            )
        return value

    @property
    def effective_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        password = self.embedded_redis_password
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.embedded_redis_port}/0"

    @property
    def embedded_redis_password_file(self) -> Path:
        """The embedded Valkey's password (made by `dispatch up`, owner-only)."""
        return self.data_dir / "valkey.password"

    @property
    def embedded_redis_password(self) -> str | None:
        path = self.embedded_redis_password_file
        return path.read_text().strip() if path.exists() else None

    @property
    def uses_embedded_redis(self) -> bool:
        return not self.redis_url and not self.sentinel_hosts

    @property
    def sentinel_hosts(self) -> list[tuple[str, int]]:
        hosts = []
        for part in self.redis_sentinels.split(","):
            if part.strip():
                host, _, port = part.strip().rpartition(":")
                hosts.append((host or part.strip(), int(port) if host else 26379))
        return hosts

    @property
    def broker_url(self) -> str:
        """Celery's broker: the Redis URL, or kombu's sentinel:// list (the master's name
        goes in the transport options)."""
        if not self.sentinel_hosts:
            return self.effective_redis_url
        url = urlsplit(self.effective_redis_url)
        auth = f":{url.password}@" if url.password else ""
        db = url.path or "/0"
        return ";".join(f"sentinel://{auth}{h}:{p}{db}" for h, p in self.sentinel_hosts)

    @property
    def api_base_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def sim_base_url(self) -> str:
        return f"http://{self.sim_host}:{self.sim_port}"

    @property
    def sim_tls_endpoint(self) -> str:
        return f"{self.sim_host}:{self.sim_tls_port}"

    @property
    def sim_ca_dir(self) -> Path:
        """Where the simulator keeps the CA its TLS port's certificate comes from."""
        return self.data_dir / "sim"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def child_environment(overrides: dict[str, str], *, clean: bool = False) -> dict[str, str]:
    """The environment for a child process: ours, with ``DISPATCH_<NAME>`` overrides.

    ``clean`` drops the ``DISPATCH_*`` variables we inherited, so the child sees
    only the overrides (a scratch stack must not pick up the caller's Redis URL)."""
    env = {k: v for k, v in os.environ.items() if not (clean and k.startswith("DISPATCH_"))}
    for name, value in overrides.items():
        env[f"DISPATCH_{name.upper()}"] = value
    return env
