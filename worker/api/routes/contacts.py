"""Contacts: the paths the platform's client SDK calls (scope ``contacts``)."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from worker.api.deps import ContactsKey, RedisDep
from worker.api.views import contact_detail
from worker.codes import Code
from worker.errors import Rejected
from worker.ids import new_id
from worker.models import CONTACT_ID_RE, MARKETING, ContactBody, ContactCreate
from worker.services import importer
from worker.store import contacts, preferences, tokens
from worker.store.contacts import Contact

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])

MAX_JSON_ITEMS = 10_000
ContactIdPath = Annotated[str, Path(pattern=CONTACT_ID_RE.pattern)]


def _not_found(contact_id: str) -> Rejected:
    return Rejected(Code.CONTACT_NOT_FOUND, f"Contact '{contact_id}' not found")


async def _details(redis: RedisDep, account: str, items: list[Contact]) -> list[dict[str, Any]]:
    """Contacts with their tokens' counters, read in one pipeline."""
    members = [m for c in items for m in c.push_tokens]
    stats = {f"{s.platform}:{s.token}": s for s in await tokens.load_many(redis, account, members)}
    numbers = await preferences.number_opt_outs(redis, account, (c.phone or "" for c in items))
    return [contact_detail(c, stats, numbers.get(c.phone or "")) for c in items]


async def _opt_in_number(redis: RedisDep, account: str, contact_id: str, body: ContactBody) -> None:
    """An opt-in of WhatsApp marketing through the API also lifts the contact's number's
    keyword opt-out (STOP): the account says the person consented again."""
    if body.preferences is None or not any(
        t.channel in (None, "whatsapp") and t.category in (None, MARKETING)
        for t in body.preferences.opt_in
    ):
        return
    contact = await contacts.get(redis, account, contact_id)
    if contact is not None and contact.phone:
        await preferences.forget_number(redis, account, contact.phone)


async def _detail(redis: RedisDep, account: str, contact_id: str) -> dict[str, Any]:
    contact = await contacts.get(redis, account, contact_id)
    if contact is None:
        raise _not_found(contact_id)
    [detail] = await _details(redis, account, [contact])
    return detail


@router.post("")
async def create_contact(body: ContactCreate, key: ContactsKey, redis: RedisDep) -> JSONResponse:
    contact_id = body.id or new_id("cct")
    result = await contacts.upsert(redis, key.account, contact_id, body, create_only=True)
    if result is contacts.Upsert.EXISTS:
        raise Rejected(Code.CONTACT_EXISTS, f"Contact '{contact_id}' already exists")
    detail = await _detail(redis, key.account, contact_id)
    return JSONResponse({"success": True, "contact": detail}, 201)


@router.post("/import")
async def import_contacts(request: Request, key: ContactsKey, redis: RedisDep) -> dict[str, Any]:
    """Import many contacts: a CSV body (``Content-Type: text/csv``, streamed to a spool
    file, never held in memory) or a JSON list of contact objects (up to 10,000)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("text/csv", "application/csv"):
        with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spool:
            async for chunk in request.stream():
                spool.write(chunk)
            spool.seek(0)
            text = io.TextIOWrapper(spool, encoding="utf-8-sig", errors="replace", newline="")
            # The whole file is read once for its CSV structure before any row is imported:
            # a malformed line (a field over the csv module's 128 KiB, say) is a 400 that
            # changes nothing, not an error halfway through.
            checker = csv.reader(text)
            try:
                for _ in checker:
                    pass
            except csv.Error as exc:
                raise Rejected(
                    Code.INVALID_CSV, f"The CSV body is malformed at line {checker.line_num}: {exc}"
                ) from None
            text.seek(0)
            reader = csv.DictReader(text)
            if not reader.fieldnames:
                raise Rejected(Code.INVALID_CSV, "The CSV body is empty or has no header row")
            report = await importer.import_rows(redis, key.account, reader)
            text.detach()
    elif content_type == "application/json":
        try:
            items = json.loads(await request.body())
        except ValueError:
            raise Rejected(Code.INVALID_JSON, "Request body is not valid JSON") from None
        if not isinstance(items, list) or len(items) > MAX_JSON_ITEMS:
            raise Rejected(
                Code.INVALID_REQUEST,
                f"Expected a JSON list of at most {MAX_JSON_ITEMS} contacts (use CSV for more)",
            )
        report = await importer.import_rows(
            redis, key.account, items, parse=importer.contact_from_object
        )
    else:
        raise Rejected(
            Code.UNSUPPORTED_MEDIA_TYPE,
            "Send the contacts as text/csv or as a JSON list (application/json)",
        )
    return {"success": True, **report.as_dict()}


@router.get("")
async def list_contacts(
    key: ContactsKey,
    redis: RedisDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    items, total = await contacts.page(redis, key.account, page, limit)
    return {
        "success": True,
        "contacts": await _details(redis, key.account, items),
        "page": page,
        "limit": limit,
        "total": total,
    }


@router.get("/{contact_id}")
async def get_contact(
    contact_id: ContactIdPath, key: ContactsKey, redis: RedisDep
) -> dict[str, Any]:
    return {"success": True, "contact": await _detail(redis, key.account, contact_id)}


@router.patch("/{contact_id}")
async def update_contact(
    contact_id: ContactIdPath, body: ContactBody, key: ContactsKey, redis: RedisDep
) -> JSONResponse:
    """Create or update: fields not sent are left alone, push tokens are merged."""
    result = await contacts.upsert(redis, key.account, contact_id, body)
    created = result is contacts.Upsert.CREATED
    await _opt_in_number(redis, key.account, contact_id, body)
    detail = await _detail(redis, key.account, contact_id)
    return JSONResponse(
        {"success": True, "created": created, "contact": detail}, 201 if created else 200
    )


@router.delete("/{contact_id}")
async def delete_contact(
    contact_id: ContactIdPath, key: ContactsKey, redis: RedisDep
) -> dict[str, Any]:
    if not await contacts.delete(redis, key.account, contact_id):
        raise _not_found(contact_id)
    return {"success": True, "id": contact_id, "deleted": True}


@router.delete("/{contact_id}/push_tokens/{token}")
async def delete_push_token(
    contact_id: ContactIdPath, token: str, key: ContactsKey, redis: RedisDep
) -> dict[str, Any]:
    """Unregister a device token (the app was uninstalled or the user logged out)."""
    if not await contacts.exists(redis, key.account, contact_id):
        raise _not_found(contact_id)
    removed = await contacts.remove_token(redis, key.account, contact_id, token)
    if removed is None:
        raise Rejected(Code.PUSH_TOKEN_NOT_FOUND, f"Contact '{contact_id}' has no such push token")
    platform, _, _ = removed.partition(":")
    return {"success": True, "id": contact_id, "platform": platform, "deleted": True}
