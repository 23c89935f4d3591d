"""The table of error codes (worker/codes.py) is complete, and the adapters agree with it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from worker.codes import MEANINGS, PROVIDER_FAILED, Code, failed_send_status, meaning, status
from worker.errors import AccountError, InvalidTokenError, Rejected, RetryableError
from worker.providers import apns
from worker.providers.whatsapp import ERROR_CODES

KNOWN = {c.value for c in Code}
WORKER = Path(__file__).resolve().parents[2] / "worker"
# Calls whose argument at this position is an error code.
_CODE_ARGUMENT = {"Rejected": 0, "Code": 0, "PydanticCustomError": 0}


def _codes_in(tree: ast.AST) -> list[tuple[str, int]]:
    """The error codes written as string literals: ``code="..."``, ``"code": "..."``,
    and the code argument of ``Rejected``/``Code``/``PydanticCustomError``."""
    found: list[tuple[str, int]] = []

    def text(node: ast.AST | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.value, node.lineno))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "code":
                    text(keyword.value)
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            position = _CODE_ARGUMENT.get(str(name))
            if position is not None and len(node.args) > position:
                text(node.args[position])
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code":
                    text(value)
    return found


def test_every_code_has_a_meaning_with_a_status() -> None:
    missing = [c for c in Code if c not in MEANINGS]
    assert not missing, f"codes without a row in worker.codes.MEANINGS: {missing}"
    for code, row in MEANINGS.items():
        assert 200 < row.status < 600, code
        assert row.send_status is None or 400 <= row.send_status < 600, code


def literal_codes(root: Path) -> dict[str, list[str]]:
    """Every code written as a literal under ``root`` (the simulator is a provider, with
    codes of its own), with where."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        if "sim" in path.relative_to(root).parts:
            continue
        for name, number in _codes_in(ast.parse(path.read_text())):
            found.setdefault(name, []).append(f"{path.relative_to(root)}:{number}")
    return found


def test_no_literal_code_in_worker_is_missing_from_the_table() -> None:
    found = literal_codes(WORKER)
    assert "invalid_phone_number" in found  # the scan reads worker/ (the models' validators)
    unknown = {name: where for name, where in found.items() if name not in KNOWN}
    assert not unknown, f"codes used in worker/ but not in worker.codes.Code: {unknown}"


def test_the_literal_scan_finds_an_unknown_code(tmp_path: Path) -> None:
    # The scan above must be able to fail: a literal it cannot see would pass silently.
    (tmp_path / "mod.py").write_text(
        'raise X("no", code="made_up_code")\n'
        'body = {"code": "another_one"}\n'
        'raise PydanticCustomError("third_one", "bad")\n'
        'raise Rejected("fourth_one")\n'
    )
    found = literal_codes(tmp_path)
    assert set(found) == {"made_up_code", "another_one", "third_one", "fourth_one"}
    assert "made_up_code" not in KNOWN


def test_statuses_the_api_answers_with() -> None:
    # A failed synchronous send: the caller's to fix (422), the channel's (403), or the
    # provider's (502), as the API always answered.
    for code in ("template_not_found", "recipient_opted_out", "template_parameter_invalid"):
        assert failed_send_status(code) == 422
    for code in ("channel_not_configured", "channel_auth_failed", "account_restricted"):
        assert failed_send_status(code) == 403
    for code in ("rate_limited", "provider_unavailable", "expired", "internal_error"):
        assert failed_send_status(code) == PROVIDER_FAILED
    assert failed_send_status("written_by_another_version") == PROVIDER_FAILED
    assert failed_send_status(None) == PROVIDER_FAILED
    # The same codes refused by the API.
    assert status("rate_limited") == 429
    assert status("internal_error") == 500
    assert status("campaign_state_conflict") == 409


def test_rejected_takes_its_status_and_default_message_from_the_table() -> None:
    refused = Rejected(Code.PUSH_NOT_ENABLED)
    assert (refused.status, refused.message) == (403, MEANINGS[Code.PUSH_NOT_ENABLED].message)
    named = Rejected(Code.URL_NOT_ALLOWED, "steps[0].url: private", "steps[0].url", step=0)
    assert named.status == 400
    assert named.body_fields() == {"field": "steps[0].url", "step": 0}
    with pytest.raises(KeyError):
        Rejected(Code.CONTACT_NOT_FOUND)  # no fixed message: the caller must say which


@pytest.mark.parametrize(("provider_code", "row"), sorted(ERROR_CODES.items()))
def test_whatsapp_error_codes_agree_with_the_table(provider_code: int, row: object) -> None:
    kind, code = row.kind, row.code  # type: ignore[attr-defined]
    assert code in KNOWN, provider_code
    assert meaning(code).retry == (kind == "retry"), (provider_code, code)
    assert meaning(code).suspend == (kind == "account"), (provider_code, code)


@pytest.mark.parametrize(
    ("status_", "reason"),
    [
        ("410", "Unregistered"),
        ("400", "BadDeviceToken"),
        ("403", "ExpiredProviderToken"),
        ("403", "InvalidProviderToken"),
        ("429", "TooManyRequests"),
        ("503", "ServiceUnavailable"),
        ("400", "PayloadTooLarge"),
        ("405", "MethodNotAllowed"),
    ],
)
def test_apns_classes_agree_with_the_table(status_: str, reason: str) -> None:
    error = apns.classify(status_, reason)
    row = meaning(error.code)
    assert error.code in KNOWN
    assert row.retry == isinstance(error, RetryableError)
    assert row.suspend == isinstance(error, AccountError)
    assert row.prune == isinstance(error, InvalidTokenError)
