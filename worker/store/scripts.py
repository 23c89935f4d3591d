"""Lua scripts shipped with the package, each declared once here, run by SHA (sent in full
only once per server).

A script is a ``Script`` constant: its file's name, the names of its KEYS and of its ARGV
in order, a ``*name`` last for a variadic tail (given as a list). Callers name what they
pass, ``await GCRA.run(redis, keys={...}, args={...})``, or ``GCRA.queue(pipe, ...)`` in a
pipeline or MULTI; both pack the same way, and a missing or unexpected name raises
``TypeError`` before anything reaches Redis (a list in the wrong order would reach the
script and misbehave quietly). Each file starts with the same names (``-- KEYS: a, b``,
``-- ARGV: c, *d``); tests/unit/test_lua_scripts.py holds the two together.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

_INCLUDE = re.compile(r"^-- include: (\w+)$", re.MULTILINE)
_NAME = re.compile(r"^\*?[a-z][a-z0-9_]*$")

# Every declaration by file name: one per file (a second raises at import).
DECLARED: dict[str, Script] = {}


@cache
def source(name: str) -> str:
    """The script's text; a line ``-- include: other`` stands for ``other.lua`` (scripts
    cannot call each other, so what several share is pasted into each)."""
    text = (resources.files("worker.store") / "lua" / f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: source(m.group(1)), text)


@cache
def _sha(name: str) -> str:
    return hashlib.sha1(source(name).encode(), usedforsecurity=False).hexdigest()


def _pack(script: str, kind: str, names: tuple[str, ...], given: Mapping[str, Any]) -> list[Any]:
    plain = [n.lstrip("*") for n in names]
    missing = [n for n in plain if n not in given]
    extra = sorted(set(given) - set(plain))
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected {', '.join(extra)}")
        raise TypeError(f"{script}.lua {kind}: {'; '.join(problems)}")
    packed: list[Any] = []
    for declared, name in zip(names, plain, strict=True):
        value = given[name]
        if declared.startswith("*"):
            # A string is a sequence too: refused, it would become one argument per letter.
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                raise TypeError(f"{script}.lua {kind}: {name} is a variadic tail, give a list")
            packed.extend(value)
        else:
            packed.append(value)
    return packed


@dataclass(frozen=True)
class Script:
    """``worker/store/lua/<name>.lua`` and the names of its KEYS and ARGV, in order.
    ``fragment``: a file other scripts include (``-- include: name``), never run itself."""

    name: str
    keys: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    fragment: bool = False

    def __post_init__(self) -> None:
        for kind, names in (("KEYS", self.keys), ("ARGV", self.args)):
            bad = [n for n in names if not _NAME.fullmatch(n)]
            tails = [i for i, n in enumerate(names) if n.startswith("*")]
            plain = [n.lstrip("*") for n in names]
            if bad or len(set(plain)) != len(plain) or tails not in ([], [len(names) - 1]):
                raise ValueError(f"{self.name}.lua {kind}: bad names {names}")
        if self.name in DECLARED:
            raise ValueError(f"{self.name}.lua is declared twice")
        DECLARED[self.name] = self

    def pack(
        self, keys: Mapping[str, Any] | None = None, args: Mapping[str, Any] | None = None
    ) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV as lists, in the declared order; TypeError naming the script when
        a name is missing or unexpected."""
        if self.fragment:
            raise TypeError(f"{self.name}.lua is included by other scripts, not run")
        return (
            _pack(self.name, "KEYS", self.keys, keys or {}),
            _pack(self.name, "ARGV", self.args, args or {}),
        )

    async def run(
        self,
        redis: Redis,
        *,
        keys: Mapping[str, Any] | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> Any:
        packed_keys, packed_args = self.pack(keys, args)
        try:
            return await redis.evalsha(
                _sha(self.name), len(packed_keys), *packed_keys, *packed_args
            )
        except NoScriptError:
            return await redis.eval(source(self.name), len(packed_keys), *packed_keys, *packed_args)

    async def load(self, redis: Redis) -> str:
        """Make sure the server has the script (for ``queue(..., sha=)`` in a pipeline of
        many calls); returns its SHA."""
        return str(await redis.script_load(source(self.name)))

    def queue(
        self,
        pipe: Pipeline,
        *,
        keys: Mapping[str, Any] | None = None,
        args: Mapping[str, Any] | None = None,
        sha: str | None = None,
    ) -> None:
        """Add the call to the caller's pipeline or MULTI. With ``sha`` (from ``load``),
        EVALSHA; without, EVAL with the whole text: inside a MULTI a NOSCRIPT would fail
        that one command while the others still apply."""
        packed_keys, packed_args = self.pack(keys, args)
        if sha is None:
            pipe.eval(source(self.name), len(packed_keys), *packed_keys, *packed_args)
        else:
            pipe.evalsha(sha, len(packed_keys), *packed_keys, *packed_args)


# --- the scripts -------------------------------------------------------------------------

SEND_LIB = Script("send_lib", fragment=True)

AUTOMATION_LIB = Script(
    "automation_lib",
    keys=("delayed",),
    args=(
        "now",
        "run_key",
        "steps_key",
        "lock_key",
        "counts_key",
        "definition_key",
        "tags_key",
        "tag_members_key",
        "delayed_member",
        "contact_events",
        "tag_triggers",
        "account",
        "outbox",
        "webhook_accounts",
    ),
    fragment=True,
)
AUTOMATION_ADVANCE = Script(
    "automation_advance",
    keys=AUTOMATION_LIB.keys,
    args=(*AUTOMATION_LIB.args, "token", "max_steps", "*run_ids"),
)
AUTOMATION_RECORD = Script(
    "automation_record",
    keys=AUTOMATION_LIB.keys,
    args=(
        *AUTOMATION_LIB.args,
        "run_id",
        "automation_id",
        "step_index",
        "record_status",
        "record",
        "next_step",
        "run_status",
        "due_at",
        "error",
    ),
)
AUTOMATION_ENROLL = Script(
    "automation_enroll",
    keys=("automation", "enrolled", "run", "runs", "counts", "queue", "run_steps", "delayed"),
    args=(
        "contact_id",
        "run_id",
        "now",
        "job",
        "event",
        "automation_id",
        "delayed_member",
        "parked_record",
    ),
)
CAMPAIGN_COUNT = Script(
    "campaign_count",
    keys=("campaign", "counts", "seconds", "outbox", "webhook_accounts"),
    args=("now", "change", "account", "campaign_id"),
)
CAMPAIGN_EDIT = Script("campaign_edit", keys=("campaign",), args=("values",))
CAMPAIGN_PARK = Script("campaign_park", keys=("campaign", "parked"), args=("job",))
CAMPAIGN_TRANSITION = Script(
    "campaign_transition",
    keys=("campaign", "parked", "outbox", "webhook_accounts"),
    args=("action", "now", "send_at", "account", "campaign_id"),
)
CONTACT_DELETE = Script(
    "contact_delete",
    keys=("contact", "contacts", "contact_tokens", "account_tokens", "contact_tags"),
    args=("contact_id", "token_prefix", "tag_members_prefix"),
)
CONTACT_UPSERT = Script(
    "contact_upsert",
    keys=("contact", "contacts", "contact_tokens", "account_tokens", "contact_tags", "*token_keys"),
    args=(
        "contact_id",
        "now",
        "mode",
        "fields",
        "contact_tokens_prefix",
        "contact_tokens_suffix",
        "tags",
        "tag_members_prefix",
        "contact_events",
        "created_triggers",
        "tag_added_triggers",
        "account",
        "*token_members",
    ),
)
DELAYED_TAKE = Script("delayed_take", keys=("delayed",), args=("now", "*members"))
DELIVERY_STATUS = Script(
    "delivery_status",
    keys=("message", "usage", "outbox"),
    args=("status", "at", "error", "usage_ttl_s", "emit", "account", "message_id"),
)
GCRA = Script(
    "gcra",
    keys=("tat", "penalty"),
    args=("interval_ms", "tolerance_ms", "cost", "max_wait_ms"),
)
HOLD_STATUS = Script("hold_status", keys=("wamid_index", "held"), args=("report", "hold_s"))
IDEM_CLAIM = Script(
    "idem_claim", keys=("record",), args=("body_hash", "message_id", "now", "ttl_s")
)
PAGE_READ = Script(
    "page_read", args=("contact_prefix", "tokens_suffix", "field_count", "*fields_then_ids")
)
PENALIZE = Script("penalize", keys=("penalty",), args=("cap", "ttl_ms"))
PROVIDER_TOKEN_SWAP = Script(
    "provider_token_swap", keys=("record",), args=("seen_fingerprint", "new_record", "ttl_s")
)
PUSH_SEND = Script(
    "push_send",
    keys=(
        "api_key",
        "fcm_channel",
        "apns_channel",
        "contact_tokens",
        "message",
        "roster",
        "unstarted",
        "queue",
        "usage",
        "contact",
        "delayed",
    ),
    args=(
        "check_key",
        "fcm_bytes",
        "apns_bytes",
        "max_bytes",
        "ttl_s",
        "unstarted_member",
        "created_at",
        "job",
        "fields",
        "usage_ttl_s",
        "consent_category",
        "due",
    ),
)
RELEASE = Script("release", keys=("lock",), args=("token",))
RENEW = Script("renew", keys=("lock",), args=("token", "ttl_ms"))
CAP_TAKE = Script("cap_take", keys=("counts",), args=("sender", "max", "ttl_s", "*contacts"))

WEBHOOK_ENQUEUE = Script(
    "webhook_enqueue",
    keys=("queue", "retry", "index", "stats", "work"),
    args=(
        "endpoint_id",
        "created_at",
        "status",
        "ttl_s",
        "backlog_max",
        "index_max",
        "work_member",
        "delivery_key_template",
        "dropped_reason",
        "*deliveries",
    ),
)
WEBHOOK_SETTLE = Script(
    "webhook_settle", keys=("queue", "retry", "work"), args=("work_member", "now")
)
TOKEN_REMOVE = Script(
    "token_remove", keys=("contact_tokens", "token", "account_tokens"), args=("member",)
)
TOKEN_RESULTS = Script(
    "token_results",
    args=(
        "token_prefix",
        "contact_tokens_prefix",
        "contact_tokens_suffix",
        "delivered_at",
        "delivered",
        "*other_results",
    ),
)
WHATSAPP_SEND = Script(
    "whatsapp_send",
    keys=(
        "api_key",
        "channel",
        "suspension",
        "contact",
        "template_or_window",
        "message",
        "unstarted",
        "queue",
        "optouts",
        "delayed",
    ),
    args=(
        "check_key",
        "check_contact",
        "template_field",
        "parameter_count",
        "ttl_s",
        "unstarted_member",
        "created_at",
        "job",
        "fields",
        "body_max_chars",
        "consent_category",
        "phone",
        "due",
    ),
)
