"""Contact import: rows in (CSV or JSON), contacts stored in batches, a report out.

CSV columns: ``id, phone, email, name, fcm_token, apns_token, tags`` (tags separated
by ``;`` or ``|``), ``opt_out`` and ``opt_in`` (preference targets separated the same
way, each ``channel``, ``category``, ``channel:category`` or ``*`` for everything: see
``preference_targets``); any other column becomes an attribute. Rows are read one at a
time and written in pipelined batches, so a million-row file is never held in
memory. A row that cannot be stored (bad phone, bad token, bad email, bad tag, bad
id) is skipped with its reason; the others are created or merged into existing
contacts like a PATCH. Without an ``id`` column a new id is made per row, so give
one if the file may be imported twice.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from worker.ids import new_id
from worker.models import CONTACT_ID_RE, ContactBody
from worker.store import contacts

COLUMNS = {"id", "phone", "email", "name", "fcm_token", "apns_token", "tags", "opt_out", "opt_in"}
_CHANNELS = ("whatsapp", "push")
BATCH = 500
MAX_EXAMPLES = 100
_TAG_SPLIT = re.compile(r"[;|]")
# The first field at fault names the reason a row was skipped.
_REASONS = {
    "phone": "bad phone",
    "email": "bad email",
    "push_tokens": "bad token",
    "tags": "bad tag",
    "name": "bad name",
    "attributes": "bad attribute",
    "preferences": "bad preference",
}


class RowError(ValueError):
    pass


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    # (row number, reason) of the first skipped rows; row 1 is the first data row.
    examples: list[tuple[int, str]] = field(default_factory=list)

    def skip(self, row: int, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason.split(":")[0]] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((row, reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.created + self.updated,
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "skipped_by_reason": dict(self.reasons),
            "errors": [{"row": row, "reason": reason} for row, reason in self.examples],
        }


def _reason(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = first.get("loc", ())
    kind = _REASONS.get(str(loc[0]) if loc else "", "bad row")
    return f"{kind}: {first.get('msg', 'invalid')}"


def contact_from_row(row: dict[str, Any]) -> tuple[str, ContactBody]:
    """One CSV row (column → text) as a contact id and the body to merge."""
    cells = {str(k).strip().lower(): str(v or "").strip() for k, v in row.items() if k}
    contact_id = cells.get("id") or new_id("cct")
    if not CONTACT_ID_RE.fullmatch(contact_id):
        raise RowError(f"bad id: {contact_id[:40]!r} is not 1-128 of A-Z a-z 0-9 _ . -")
    data: dict[str, Any] = {k: cells[k] for k in ("phone", "email", "name") if cells.get(k)}
    tokens = [
        {"platform": platform, "token": cells[f"{platform}_token"]}
        for platform in ("fcm", "apns")
        if cells.get(f"{platform}_token")
    ]
    if tokens:
        data["push_tokens"] = tokens
    tags = [t.strip() for t in _TAG_SPLIT.split(cells.get("tags", "")) if t.strip()]
    if tags:
        data["tags"] = tags
    preferences = {
        kind: [preference_target(t) for t in _TAG_SPLIT.split(cells.get(kind, "")) if t.strip()]
        for kind in ("opt_out", "opt_in")
    }
    if any(preferences.values()):
        data["preferences"] = preferences
    attributes = {k: v for k, v in cells.items() if k not in COLUMNS and v}
    if attributes:
        data["attributes"] = attributes
    try:
        return contact_id, ContactBody.model_validate(data)
    except ValidationError as exc:
        raise RowError(_reason(exc)) from None


def preference_target(text: str) -> dict[str, str]:
    """A CSV cell's preference target: ``whatsapp`` or ``push`` (a channel), ``marketing``
    (a category), ``whatsapp:marketing`` (both; ``*`` for either part), ``*`` (everything
    but transactional sends). Validated as the API's targets are."""
    text = text.strip().lower()
    if ":" in text:
        channel, _, category = text.partition(":")
        parts = {"channel": channel.strip(), "category": category.strip()}
        return {k: v for k, v in parts.items() if v not in ("*", "")}
    if text == "*":
        return {}
    return {"channel": text} if text in _CHANNELS else {"category": text}


def contact_from_object(item: Any) -> tuple[str, ContactBody]:
    """One JSON item: the contact API's fields (``id`` optional)."""
    if not isinstance(item, dict):
        raise RowError("bad row: not a JSON object")
    contact_id = str(item.get("id") or new_id("cct"))
    if not CONTACT_ID_RE.fullmatch(contact_id):
        raise RowError(f"bad id: {contact_id[:40]!r} is not 1-128 of A-Z a-z 0-9 _ . -")
    try:
        return contact_id, ContactBody.model_validate({k: v for k, v in item.items() if k != "id"})
    except ValidationError as exc:
        raise RowError(_reason(exc)) from None


class Importer:
    """Feed it rows; it writes a batch whenever one is full. Call ``finish`` at the end."""

    def __init__(
        self,
        redis: Redis,
        account_id: str,
        parse: Callable[[Any], tuple[str, ContactBody]],
        batch_size: int = BATCH,
    ) -> None:
        self.redis = redis
        self.account_id = account_id
        self.parse = parse
        self.batch_size = batch_size
        self.report = ImportReport()
        self._batch: dict[str, ContactBody] = {}

    async def add(self, item: Any) -> None:
        self.report.rows += 1
        try:
            contact_id, body = self.parse(item)
        except RowError as exc:
            self.report.skip(self.report.rows, str(exc))
            return
        if contact_id in self._batch:
            # The same contact twice in one batch: write what we have first (order matters).
            await self._flush()
        self._batch[contact_id] = body
        if len(self._batch) >= self.batch_size:
            await self._flush()

    async def _flush(self) -> None:
        if not self._batch:
            return
        results = await contacts.upsert_many(
            self.redis, self.account_id, list(self._batch.items()), source="import"
        )
        self.report.created += sum(1 for r in results if r is contacts.Upsert.CREATED)
        self.report.updated += sum(1 for r in results if r is contacts.Upsert.UPDATED)
        self._batch = {}

    async def finish(self) -> ImportReport:
        await self._flush()
        return self.report


async def import_rows(
    redis: Redis,
    account_id: str,
    rows: Iterable[Any] | AsyncIterable[Any],
    parse: Callable[[Any], tuple[str, ContactBody]] = contact_from_row,
    batch_size: int = BATCH,
) -> ImportReport:
    importer = Importer(redis, account_id, parse, batch_size)
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            await importer.add(row)
    else:
        for row in rows:
            await importer.add(row)
    return await importer.finish()
