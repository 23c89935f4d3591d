"""Contact import through the CLI and the API, into the real Valkey."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from tests.integration.conftest import Tenant
from tests.support import dispatch
from worker.masking import mask_token


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cells(output: str, first: str) -> list[str]:
    """The cells of the table row starting with ``first`` in rich's output."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{output}")


def _rows(count: int) -> tuple[list[dict[str, str]], dict[str, int]]:
    """``count`` rows: most good, every 25th with a bad phone, every 40th with a bad token."""
    rows, bad = [], {"bad phone": 0, "bad token": 0}
    for i in range(count):
        row = {
            "id": f"imp{i:05d}",
            "phone": f"+1415555{2600 + i % 100}",
            "email": f"u{i}@ex.com",
            "name": f"User {i}",
            "fcm_token": f"fcm-{i:05d}:APA91b-import",
            "apns_token": "",
            "tags": "vip;eu" if i % 2 else "us",
            "plan": "gold" if i % 3 else "",
        }
        if i % 25 == 7:
            row["phone"] = "555-0100"
            bad["bad phone"] += 1
        elif i % 40 == 13:
            row["apns_token"] = "zz-not-hex"
            bad["bad token"] += 1
        rows.append(row)
    return rows, bad


def test_cli_import_streams_a_file_and_reports_what_it_skipped(
    tenant: Tenant, service_env: dict[str, str], tmp_path: Path
) -> None:
    rows, bad = _rows(1000)
    path = tmp_path / "contacts.csv"
    _write_csv(path, rows)
    run = ["contacts", "import", str(path), "--account", tenant.name, "--batch", "128"]

    first = dispatch(service_env, *run)

    assert first.returncode == 1, first.stderr  # some rows were skipped
    skipped = sum(bad.values())
    assert _cells(first.stdout, "1000") == ["1000", str(1000 - skipped), "0", str(skipped)]
    assert _cells(first.stdout, "bad phone") == ["bad phone", str(bad["bad phone"])]
    assert _cells(first.stdout, "bad token") == ["bad token", str(bad["bad token"])]
    assert "row 8: bad phone: Invalid phone number format" in first.stdout

    listing = tenant.get("/api/v1/contacts?limit=1").json()
    assert listing["total"] == 1 + 1000 - skipped  # cct_abc123 from the fixture
    one = tenant.get("/api/v1/contacts/imp00001").json()["contact"]
    assert one["tags"] == ["eu", "vip"]
    assert one["attributes"] == {"plan": "gold"}
    assert one["push_tokens"][0]["token"] == mask_token("fcm-00001:APA91b-import")
    assert tenant.get("/api/v1/contacts/imp00007").status_code == 404  # skipped row

    again = dispatch(service_env, *run)
    # Importing the same file again merges: nothing created twice.
    assert _cells(again.stdout, "1000") == ["1000", "0", str(1000 - skipped), str(skipped)]
    assert tenant.get("/api/v1/contacts?limit=1").json()["total"] == listing["total"]


def test_cli_import_refuses_a_file_that_is_not_contacts(
    tenant: Tenant, service_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "other.csv"
    path.write_text("colour,size\nred,3\n")
    result = dispatch(service_env, "contacts", "import", str(path), "--account", tenant.name)
    assert result.returncode == 2
    assert "does not look like a contacts CSV" in result.stderr


def test_api_import_of_csv_and_json(tenant: Tenant) -> None:
    url = f"{tenant.api_url}/api/v1/contacts/import"
    body = "id,phone,tags,city\r\napi1,+14155552671,vip,Oslo\r\napi2,12,,\r\n"
    response = tenant.http.post(
        url, content=body.encode(), headers={**tenant.auth(), "Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    assert {k: report[k] for k in ("rows", "created", "skipped")} == {
        "rows": 2,
        "created": 1,
        "skipped": 1,
    }
    assert report["errors"] == [{"row": 2, "reason": "bad phone: Invalid phone number format"}]
    assert tenant.get("/api/v1/contacts/api1").json()["contact"]["attributes"] == {"city": "Oslo"}

    items = [{"id": "api3", "name": "Jo", "tags": ["eu"]}, {"id": "api4", "email": "x"}]
    response = tenant.http.post(
        url,
        content=json.dumps(items),
        headers={**tenant.auth(), "Content-Type": "application/json"},
    )
    assert (response.json()["created"], response.json()["skipped"]) == (1, 1)
    assert tenant.get("/api/v1/contacts/api3").json()["contact"]["tags"] == ["eu"]

    wrong = tenant.http.post(
        url, content=b"x", headers={**tenant.auth(), "Content-Type": "text/plain"}
    )
    assert wrong.status_code == 415
    assert wrong.json()["code"] == "unsupported_media_type"
