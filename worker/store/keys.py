"""Every Redis key the service uses, built here and nowhere else.

Per-account data lives under ``dispatch:{account}:…``; the few global indexes
(API key hashes, webhook routing) under ``dispatch:…`` without an account.
"""

from __future__ import annotations

PREFIX = "dispatch"
# The first segment of every global key below: no account may take one of these names,
# or its keys (dispatch:<account>:…) would mix with them. tests/unit/test_keys.py checks
# that every global key is listed here.
GLOBAL_SEGMENTS = frozenset(
    {
        "account",
        "accounts",
        "apikey",
        "apikey_id",
        "apikey_last_used",
        "contact_events",
        "delayed",
        "job-errors",
        "job-lost",
        "provider-token",
        "rl",
        "supervisor",
        "throughput",
        "unstarted",
        "wa_phone",
        "wa_verify",
        "wamid",
        "wamid-early",
        "webhook_accounts",
        "webhook_events",
        "webhook_fanout_lock",
        "webhook_fanout_published",
        "webhook_work",
        "workers",
    }
)


# The broker's index of jobs handed to a worker and not yet acknowledged (kombu's Redis
# transport, scored by when last seen): named here for the worker heartbeat that keeps a
# live worker's jobs in it fresh; the Celery app passes the same name to kombu.
BROKER_UNACKED_INDEX = "unacked_index"


# --- global -----------------------------------------------------------------


def accounts() -> str:
    return f"{PREFIX}:accounts"


def account(account_id: str) -> str:
    return f"{PREFIX}:account:{account_id}"


def api_key(key_hash: str) -> str:
    """The key record, found by the SHA-256 of the presented secret."""
    return f"{PREFIX}:apikey:{key_hash}"


def api_key_id(key_id: str) -> str:
    """key id → key hash, so a key can be listed and revoked by its id."""
    return f"{PREFIX}:apikey_id:{key_id}"


def api_key_last_used() -> str:
    """Hash: key id → when it was last used (Unix time), written at most once a minute
    per key by each API process (``worker.api.last_use``): one global hash, so listing an
    account's keys reads every key's last use in one HMGET."""
    return f"{PREFIX}:apikey_last_used"


def whatsapp_phone_index(phone_number_id: str) -> str:
    """phone number id → account, to route an inbound webhook."""
    return f"{PREFIX}:wa_phone:{phone_number_id}"


def whatsapp_verify_index(token_hash: str) -> str:
    """hash of a webhook verify token → account, for Meta's GET handshake."""
    return f"{PREFIX}:wa_verify:{token_hash}"


def early_statuses(wamid: str) -> str:
    """Status webhooks that came before the worker recorded the message's wamid (the
    provider answered the send and posted "delivered" at once): applied when it does."""
    return f"{PREFIX}:wamid-early:{wamid}"


def provider_token(signing_key: str) -> str:
    """The provider token (APNs JWT) every process signs with for one key: "team.key-id"."""
    return f"{PREFIX}:provider-token:{signing_key}"


def wamid_index(wamid: str) -> str:
    """provider message id → "account message-id", for status webhooks."""
    return f"{PREFIX}:wamid:{wamid}"


# --- per account --------------------------------------------------------------


def account_keys(account_id: str) -> str:
    return f"{PREFIX}:{account_id}:apikeys"


def channel(account_id: str, name: str) -> str:
    return f"{PREFIX}:{account_id}:channel:{name}"


def templates(account_id: str) -> str:
    return f"{PREFIX}:{account_id}:templates"


def template_field(name: str, language: str) -> str:
    return f"{name}:{language}"


def contacts(account_id: str) -> str:
    """Sorted set of contact ids by creation time (for paging)."""
    return f"{PREFIX}:{account_id}:contacts"


def contact(account_id: str, contact_id: str) -> str:
    return f"{PREFIX}:{account_id}:contact:{contact_id}"


def contact_push_tokens(account_id: str, contact_id: str) -> str:
    return f"{PREFIX}:{account_id}:contact:{contact_id}:push_tokens"


def frequency_caps(account_id: str) -> str:
    """The account's frequency caps: channel → {"max", "window_s"} (JSON)."""
    return f"{PREFIX}:{account_id}:caps"


def account_settings(account_id: str) -> str:
    """The account's audience settings: ``quiet_hours``, ``keywords`` (``{"opt_out": [..],
    "opt_in": [..]}``), ``default_ttl`` (category → seconds); each JSON."""
    return f"{PREFIX}:{account_id}:settings"


def frequency_counts(account_id: str, channel: str, window: int) -> str:
    """One window's capped sends per contact on a channel (``window``: its number since
    the epoch, in windows of the cap's length)."""
    return f"{PREFIX}:{account_id}:capcount:{channel}:{window}"


def whatsapp_optouts(account_id: str) -> str:
    """WhatsApp numbers that wrote an opt-out keyword (STOP…): number → when and which;
    their marketing is refused until they write an opt-in keyword (START)."""
    return f"{PREFIX}:{account_id}:wa_optouts"


def whatsapp_window(account_id: str, phone: str) -> str:
    """Exists (with a TTL) while the 24 h customer-service window is open."""
    return f"{PREFIX}:{account_id}:wa_window:{phone}"


def whatsapp_reports(account_id: str) -> str:
    """Exists (with a TTL) while the account's number posts status webhooks to us: a send
    left without an answer can then wait for its "sent" report instead of going again."""
    return f"{PREFIX}:{account_id}:wa_reports"


def whatsapp_confirmed(account_id: str, message_id: str) -> str:
    """The wamid of a send whose answer never came, from the "sent" report that named the
    message in ``biz_opaque_callback_data``: its next attempt records it instead of
    sending again."""
    return f"{PREFIX}:{account_id}:wa_confirmed:{message_id}"


def message(account_id: str, message_id: str) -> str:
    return f"{PREFIX}:{account_id}:msg:{message_id}"


def message_attempts(account_id: str, message_id: str) -> str:
    return f"{PREFIX}:{account_id}:msg:{message_id}:attempts"


def message_outcome(account_id: str, message_id: str) -> str:
    """A list the API BLPOPs on; the worker pushes once the send is final."""
    return f"{PREFIX}:{account_id}:outcome:{message_id}"


def push_token(account_id: str, member: str) -> str:
    """One device token's record and counters; ``member`` is ``platform:token``."""
    return f"{PREFIX}:{account_id}:token:{member}"


def push_tokens(account_id: str) -> str:
    """Every device token the account has seen (active or pruned), for stats."""
    return f"{PREFIX}:{account_id}:tokens"


def contact_push_tokens_parts(account_id: str) -> tuple[str, str]:
    """Prefix and suffix of ``contact_push_tokens``, for a Lua script that moves a token
    from whichever contact owned it: prefix + contact id + suffix."""
    prefix = contact(account_id, "")
    return prefix, contact_push_tokens(account_id, "").removeprefix(prefix)


def message_roster(account_id: str, message_id: str) -> str:
    """A push message's targets, written once: a JSON list of ``[platform:token, owner
    contact id or null, rendered notification or null]``. One string, not a hash of
    devices: Valkey stores and returns it for a tenth of the CPU per device."""
    return f"{PREFIX}:{account_id}:msg:{message_id}:roster"


def message_results(account_id: str, message_id: str) -> str:
    """A push message's device results, a list of JSON blocks ``{platform:token:
    result}`` appended once per slice; a later block's entry for a device replaces an
    earlier one. A device with no entry is still pending."""
    return f"{PREFIX}:{account_id}:msg:{message_id}:results"


def message_inflight(account_id: str, message_id: str) -> str:
    """A push message's slices in flight: a random id → the slice's ``platform:token``
    members, one per line, from just before the provider call until its results are
    recorded (one field per slice instead of a rewrite per device)."""
    return f"{PREFIX}:{account_id}:msg:{message_id}:inflight"


def rate_limit(name: str) -> str:
    """A rate limit's schedule, per provider credential (``wa:<phone number id>``,
    ``fcm:<project>``, ``apns:<topic>``): global, shared by every account and worker."""
    return f"{PREFIX}:rl:{name}"


def rate_limit_penalty(name: str) -> str:
    return f"{PREFIX}:rl:{name}:penalty"


def message_lock(account_id: str, message_id: str) -> str:
    """Held by the one job working on a message (a lease: it expires if the worker dies)."""
    return f"{PREFIX}:{account_id}:msg:{message_id}:lock"


def delayed() -> str:
    """Sorted set of jobs to put back on the queue later, scored by when."""
    return f"{PREFIX}:delayed"


def dead_letters(account_id: str) -> str:
    """Sorted set of the account's message ids that ran out of retries, by when."""
    return f"{PREFIX}:{account_id}:deadletters"


def idempotency(account_id: str, key_hash: str) -> str:
    """The first request made with an Idempotency-Key, and its answer once known."""
    return f"{PREFIX}:{account_id}:idem:{key_hash}"


def channel_suspended(account_id: str, name: str) -> str:
    """Set (with a TTL) after the provider refused the account's credentials."""
    return f"{PREFIX}:{account_id}:channel:{name}:suspended"


def job_losses(task_id: str) -> str:
    """How many times a job's worker process died while running it (short TTL): a job that
    keeps killing its process is quarantined instead of being given back again."""
    return f"{PREFIX}:job-lost:{task_id}"


def job_errors(account_id: str | None) -> str:
    """The newest jobs and stream entries of an account that failed on a bug (JSON, newest
    first, capped); ``None``: those that named no valid account."""
    return f"{PREFIX}:job-errors:{account_id or '-'}"


def job_error_counts() -> str:
    """Hash: account (``-`` for none) → how many of its jobs failed on a bug, ever."""
    return f"{PREFIX}:job-errors"


def unstarted() -> str:
    """Sorted set of messages no job has touched yet (``task account message``), by when
    they were stored: the beat re-publishes one that waits too long (its job was lost
    between the API's write and the publish)."""
    return f"{PREFIX}:unstarted"


def contact_tags(account_id: str, contact_id: str) -> str:
    return f"{PREFIX}:{account_id}:contact:{contact_id}:tags"


def tag_members(account_id: str, tag: str) -> str:
    """The ids of the account's contacts with this tag (a segment), a sorted set."""
    return f"{PREFIX}:{account_id}:tag:{tag}"


def webhooks(account_id: str) -> str:
    """Sorted set of the account's event webhook endpoint ids by creation time."""
    return f"{PREFIX}:{account_id}:webhooks"


def webhook(account_id: str, endpoint_id: str) -> str:
    """An endpoint: its record (JSON) and its sealed signing secret, a hash."""
    return f"{PREFIX}:{account_id}:webhook:{endpoint_id}"


def webhook_queue(account_id: str, endpoint_id: str) -> str:
    """The endpoint's deliveries not tried yet, oldest first (a list of delivery ids)."""
    return f"{PREFIX}:{account_id}:webhook:{endpoint_id}:queue"


def webhook_retry(account_id: str, endpoint_id: str) -> str:
    """The endpoint's deliveries waiting for their next attempt, by when (a sorted set)."""
    return f"{PREFIX}:{account_id}:webhook:{endpoint_id}:retry"


def webhook_deliveries(account_id: str, endpoint_id: str) -> str:
    """Every recent delivery of the endpoint by creation time, for inspection and replay."""
    return f"{PREFIX}:{account_id}:webhook:{endpoint_id}:deliveries"


def webhook_stats(account_id: str, endpoint_id: str) -> str:
    """The endpoint's counters (delivered, failed, dropped) and its failing streak."""
    return f"{PREFIX}:{account_id}:webhook:{endpoint_id}:stats"


def webhook_lock(account_id: str, endpoint_id: str) -> str:
    """One sender per endpoint at a time."""
    return f"{PREFIX}:{account_id}:webhook:{endpoint_id}:lock"


def webhook_delivery(account_id: str, delivery_id: str) -> str:
    """One event for one endpoint: the event's body, its attempts, its state (a hash)."""
    return f"{PREFIX}:{account_id}:whd:{delivery_id}"


def campaigns(account_id: str) -> str:
    """Sorted set of the account's campaign ids by creation time."""
    return f"{PREFIX}:{account_id}:campaigns"


def campaign(account_id: str, campaign_id: str) -> str:
    return f"{PREFIX}:{account_id}:campaign:{campaign_id}"


def campaign_counts(account_id: str, campaign_id: str) -> str:
    """Progress counters, only ever incremented."""
    return f"{PREFIX}:{account_id}:campaign:{campaign_id}:counts"


def campaign_seconds(account_id: str, campaign_id: str) -> str:
    """Sends finished per Unix second (the recent rate)."""
    return f"{PREFIX}:{account_id}:campaign:{campaign_id}:seconds"


def campaign_deferred(account_id: str, campaign_id: str) -> str:
    """Batch jobs (``task account id``) put off to a later time (quiet hours, a local send
    time), waiting in the delayed set: a cancel publishes them at once."""
    return f"{PREFIX}:{account_id}:campaign:{campaign_id}:deferred"


def campaign_parked(account_id: str, campaign_id: str) -> str:
    """Jobs (``task account id``) that stopped because the campaign was paused."""
    return f"{PREFIX}:{account_id}:campaign:{campaign_id}:parked"


def campaign_batch(account_id: str, campaign_id: str, number: int) -> str:
    """A WhatsApp batch: the ids of its recipients' messages."""
    return f"{PREFIX}:{account_id}:campaign:{campaign_id}:batch:{number}"


def campaign_lock(account_id: str, job_id: str) -> str:
    return f"{PREFIX}:{account_id}:campaign-lock:{job_id}"


def webhook_events() -> str:
    """The outbox: every event a result produced for an account with webhooks, written in
    the result's own transaction (a stream, read by the fan-out job's consumer group)."""
    return f"{PREFIX}:webhook_events"


def webhook_fanout_published() -> str:
    """Set for a second when the beat publishes a fan-out job: at most one a second (each
    reads everything the outbox has; a job costs a few milliseconds whatever it finds)."""
    return f"{PREFIX}:webhook_fanout_published"


def webhook_fanout_lock() -> str:
    """One fan-out job reads the outbox at a time (its entries are read as one consumer)."""
    return f"{PREFIX}:webhook_fanout_lock"


WEBHOOK_EVENTS_GROUP = "dispatch"


def webhook_accounts() -> str:
    """The accounts with at least one active endpoint: only their results write events."""
    return f"{PREFIX}:webhook_accounts"


def webhook_work() -> str:
    """Endpoints with deliveries to make ("account endpoint"), by when the next is due."""
    return f"{PREFIX}:webhook_work"


def worker_heartbeat(node: str) -> str:
    """A worker group's heartbeat (JSON: queues, pid, concurrency, metrics port), short TTL."""
    return f"{PREFIX}:workers:{node}"


def worker_heartbeats() -> str:
    """The pattern of every worker group's heartbeat key."""
    return f"{PREFIX}:workers:*"


def supervisor_restarts() -> str:
    """Hash: child name of `dispatch up` -> JSON (restarts, last exit code and time);
    emptied when `dispatch up` starts."""
    return f"{PREFIX}:supervisor:restarts"


def throughput(channel: str, outcome: str, minute: int) -> str:
    """Hash: unix second -> sends of ``channel`` with ``outcome`` in that second of ``minute``."""
    return f"{PREFIX}:throughput:{channel}:{outcome}:{minute}"


def usage(account_id: str, day: str) -> str:
    """Hash: the account's usage counters for one UTC day (``YYYY-MM-DD``), field →
    count (worker.store.usage names the fields); kept about 400 days."""
    return f"{PREFIX}:{account_id}:usage:{day}"


# --- automations -----------------------------------------------------------------------


def automations(account_id: str) -> str:
    """Sorted set of the account's automation ids, by creation time."""
    return f"{PREFIX}:{account_id}:automations"


def automation(account_id: str, automation_id: str) -> str:
    """Hash: name, active, allow_reentry, version, trigger and steps (JSON), times."""
    return f"{PREFIX}:{account_id}:automation:{automation_id}"


def automation_version(account_id: str, automation_id: str, version: int | str) -> str:
    """String: the definition (trigger and steps, JSON) runs of that version follow."""
    return f"{PREFIX}:{account_id}:automation:{automation_id}:v:{version}"


def automation_triggers(account_id: str, trigger: str) -> str:
    """Set of the account's active automation ids with this trigger type."""
    return f"{PREFIX}:{account_id}:automations:trigger:{trigger}"


def automation_enrolled(account_id: str, automation_id: str) -> str:
    """Set of contact ids ever enrolled (enrolment is once unless re-entry is allowed)."""
    return f"{PREFIX}:{account_id}:automation:{automation_id}:enrolled"


def automation_runs(account_id: str, automation_id: str) -> str:
    """Sorted set of the automation's run ids, by start time."""
    return f"{PREFIX}:{account_id}:automation:{automation_id}:runs"


def automation_counts(account_id: str, automation_id: str) -> str:
    """Hash: "<step>:<waiting|done|failed>" -> runs."""
    return f"{PREFIX}:{account_id}:automation:{automation_id}:counts"


def run(account_id: str, run_id: str) -> str:
    """Hash: automation, version, contact, step, status, event (JSON), due_at, times."""
    return f"{PREFIX}:{account_id}:run:{run_id}"


def run_steps(account_id: str, run_id: str) -> str:
    """Hash: step index -> what it did (JSON: status, at, message id, outcome, error)."""
    return f"{PREFIX}:{account_id}:run:{run_id}:steps"


def run_lock(account_id: str, run_id: str) -> str:
    return f"{PREFIX}:{account_id}:run:{run_id}:lock"


def automation_batch(account_id: str, batch_id: str) -> str:
    """List of run ids whose waits ended together: one job advances them all."""
    return f"{PREFIX}:{account_id}:autobatch:{batch_id}"


def contact_events() -> str:
    """Stream: contacts created or tagged where an active automation may be triggered
    (written by the contact's own script; the beat enrols from it, consumer group below)."""
    return f"{PREFIX}:contact_events"


CONTACT_EVENTS_GROUP = "triggers"
