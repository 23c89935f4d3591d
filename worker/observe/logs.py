"""Logging for every process: one JSON object per line, or readable lines in a terminal.

Events that an operator follows a message by carry fields (``extra=``): ``event``
(``send.accepted``, ``send.attempt``, ``send.dead_letter``, ``token.pruned``...), the
message id, account, channel, outcome, provider latency. The code masks phone numbers
and tokens where it logs them; the formatters mask anything that still looks like one
(an E.164 number, a long opaque string such as a device token or an API key).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from worker.masking import mask_phone, mask_token

# Libraries that log every request at INFO: one line per provider call drowns the
# lines that matter, and their URLs carry ids we would rather not spread around.
_NOISY = ("httpx", "httpcore", "hpack")

# The structured fields a record may carry, in the order they are shown.
FIELDS = (
    "event",
    "message_id",
    "account",
    "channel",
    "campaign",
    "platform",
    "attempt",
    "outcome",
    "code",
    "latency_ms",
    "retry_in_s",
    "delivered",
    "failed",
    "retrying",
    "token",
)
_PHONE = re.compile(r"\+\d{8,15}\b")
# Device tokens (FCM: ~150 chars with ':' '-' '_'; APNs: 64 hex), API keys, secrets.
_OPAQUE = re.compile(r"[A-Za-z0-9_:\-]{40,}")


def mask_text(text: str) -> str:
    text = _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return _OPAQUE.sub(lambda m: mask_token(m.group(0)), text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            out[name] = mask_text(value) if isinstance(value, str) else value
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
            **_fields(record),
        }
        if record.exc_info:
            line["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Readable lines (a terminal under `dispatch up`): the message says what happened."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def quiet_libraries() -> None:
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def json_wanted(json_lines: bool | None) -> bool:
    """``json_lines`` None: JSON unless stderr is a terminal."""
    return (not sys.stderr.isatty()) if json_lines is None else json_lines


def configure(level: str, json_lines: bool | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_wanted(json_lines) else TextFormatter())
    # Python's warnings (a library's deprecation, Celery's running-as-root) become records.
    logging.captureWarnings(True)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_libraries()
