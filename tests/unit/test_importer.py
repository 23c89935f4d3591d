"""CSV/JSON rows → contacts: what is kept, what is skipped and why."""

from __future__ import annotations

import pytest

from worker.services.importer import RowError, contact_from_object, contact_from_row

APNS = "ab" * 32


def test_a_full_row() -> None:
    contact_id, body = contact_from_row(
        {
            "id": "cct_1",
            "phone": "+14155552671",
            "email": "a@b.co",
            "name": " Ada ",
            "fcm_token": "fcm-token-0001:APA91b",
            "apns_token": APNS,
            "tags": "vip; newsletter|eu",
            "plan": "gold",
            "empty": "",
        }
    )
    assert contact_id == "cct_1"
    assert (body.phone, body.email, body.name) == ("+14155552671", "a@b.co", "Ada")
    assert body.tags == ["vip", "newsletter", "eu"]
    assert body.attributes == {"plan": "gold"}
    assert [(t.platform, t.token) for t in body.push_tokens or []] == [
        ("fcm", "fcm-token-0001:APA91b"),
        ("apns", APNS),
    ]
    # Columns left empty are not sent, so an import never blanks a stored field.
    assert body.model_fields_set == {"phone", "email", "name", "push_tokens", "tags", "attributes"}


def test_header_case_and_spaces_do_not_matter_and_an_id_is_made_when_missing() -> None:
    contact_id, body = contact_from_row({" Phone ": "+14155552671", "ID": ""})
    assert contact_id.startswith("cct_")
    assert body.phone == "+14155552671"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"id": "c1", "phone": "12345"}, "bad phone"),
        ({"id": "c1", "apns_token": "not-hex"}, "bad token"),
        ({"id": "c1", "fcm_token": "has spaces in it, which no FCM token has"}, "bad token"),
        ({"id": "c1", "email": "nope"}, "bad email"),
        ({"id": "c1", "tags": "ok;not ok"}, "bad tag"),
        ({"id": "bad id!", "phone": "+14155552671"}, "bad id"),
        ({"id": "c1", "opt_out": "email:marketing"}, "bad preference"),
        ({"id": "c1", "opt_in": "Not A Category"}, "bad preference"),
    ],
)
def test_bad_rows_are_refused_with_a_reason(row: dict[str, str], reason: str) -> None:
    with pytest.raises(RowError) as info:
        contact_from_row(row)
    assert str(info.value).startswith(reason)


def test_json_items_use_the_contact_api_fields() -> None:
    contact_id, body = contact_from_object(
        {"id": "c9", "name": "Bo", "tags": ["a"], "attributes": {"n": 3}}
    )
    assert (contact_id, body.name, body.tags, body.attributes) == ("c9", "Bo", ["a"], {"n": 3})
    with pytest.raises(RowError):
        contact_from_object(["not", "an", "object"])


def test_opt_out_and_opt_in_columns_name_preference_targets() -> None:
    _, body = contact_from_row(
        {"id": "c1", "opt_out": "whatsapp:marketing; push | newsletter", "opt_in": "*:promo"}
    )
    assert body.preferences is not None
    assert [t.model_dump() for t in body.preferences.opt_out] == [
        {"channel": "whatsapp", "category": "marketing"},
        {"channel": "push", "category": None},
        {"channel": None, "category": "newsletter"},
    ]
    assert [t.model_dump() for t in body.preferences.opt_in] == [
        {"channel": None, "category": "promo"}
    ]
    _, everything = contact_from_row({"id": "c2", "opt_out": "*"})
    assert everything.preferences is not None
    assert [t.model_dump() for t in everything.preferences.opt_out] == [
        {"channel": None, "category": None}
    ]
    assert "opt_out" not in (everything.attributes or {})
