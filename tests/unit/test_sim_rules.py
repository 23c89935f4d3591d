"""The simulator refuses what each provider documents as refused, with the provider's own
error: one request breaking each rule of ``worker/sim/{fcm,apns,whatsapp}_rules.py``, and
a table that fails when a rule has no such request. What the real client libraries send
is accepted (the rules are not stricter than the providers)."""

from __future__ import annotations

import json
import time
import uuid
import warnings
from datetime import timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from firebase_admin import messaging

from worker.sim import apns_rules, fcm_rules, whatsapp_rules
from worker.sim.app import create_sim_app
from worker.sim.credentials import apns_key
from worker.sim.push import ApnsKeySpec, PushSim, fcm_error
from worker.sim.state import SimState

TOKEN = "fXDtJ9kS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx7dPqnZ01"
FID = "cXDtJ9kSQ0eoKMwt2KZFBa"


def _fcm(**message: Any) -> dict[str, Any]:
    return {"message": {"token": TOKEN, **message}}


FCM_EXAMPLES: dict[str, list[Any]] = {
    "json": ["not an object", ["a", "list"]],
    "unknown_field": [
        _fcm(notification={"title": "a", "subtitle": "b"}),
        _fcm(priority="high"),
        {"message": {"token": TOKEN}, "dry_run": True},
    ],
    "type": [_fcm(notification={"title": 5}), _fcm(android={"direct_boot_ok": "yes"})],
    "enum": [
        _fcm(android={"priority": "urgent"}),
        _fcm(android={"notification": {"visibility": "x"}}),
    ],
    "format": [
        _fcm(android={"ttl": "3600"}),
        _fcm(android={"notification": {"event_time": "now"}}),
    ],
    "string_map": [_fcm(data={"n": 3}), _fcm(webpush={"headers": {"TTL": 60}})],
    "reserved_key": [
        _fcm(data={"from": "x"}),
        _fcm(data={"message_type": "x"}),
        _fcm(data={"google.c.a.e": "1"}),
        _fcm(data={"gcm.n.e": "1"}),
    ],
    "one_target": [{"message": {"notification": {"title": "a"}}}, _fcm(topic="news")],
    "fid": [{"message": {"fid": TOKEN}}, {"message": {"fid": "short"}}],
    "token": [_fcm(token="fXDtJ9kS..."), _fcm(token="has space:APA91b-0000000000")],
    "ttl": [
        _fcm(android={"ttl": "2419201s"}),
        _fcm(android={"ttl": "2419200.5s"}),
        _fcm(android={"ttl": "-1s"}),
    ],
    "image": [
        _fcm(notification={"title": "a", "image": "not a url"}),
        _fcm(notification={"image": "/relative/i.png"}),
        _fcm(android={"notification": {"image": "ftp://x.test/i.png"}}),
        _fcm(apns={"fcm_options": {"image": "x.test/i.png"}}),
    ],
    "apns_payload": [
        _fcm(apns={"payload": {"badge": 1}}),
        _fcm(apns={"payload": {"aps": {"badge": "3"}}}),
        _fcm(apns={"payload": {"aps": {"badge": 1.5}}}),
        _fcm(apns={"payload": {"aps": {"badge": True}}}),
    ],
    "size": [_fcm(data={"k": "x" * 4100})],
}


@pytest.mark.parametrize(
    ("rule", "body"), [(rule, body) for rule, bodies in FCM_EXAMPLES.items() for body in bodies]
)
def test_fcm_refuses_what_fcm_refuses(rule: str, body: Any) -> None:
    refused = fcm_rules.check(body)
    assert refused is not None
    assert refused.id == rule
    status, answer = fcm_error(refused.rule.error, refused.message)
    assert status == 400
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    assert answer["error"]["message"] == refused.message


def test_every_fcm_rule_has_a_request_that_breaks_it() -> None:
    assert set(FCM_EXAMPLES) == set(fcm_rules.RULES)


def test_fcm_accepts_what_firebase_admin_encodes() -> None:
    """Every option the adapter may send, encoded by the library itself."""
    for target in ({"token": TOKEN}, {"fid": FID}, {"topic": "news"}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Message(token=…)
            message = _rich_message(target)
        body = {"message": messaging._MessagingService.encode_message(message)}
        assert fcm_rules.check(body) is None, body


def _rich_message(
    target: dict[str, str], ttl: timedelta = timedelta(hours=1), badge: int = 1
) -> messaging.Message:
    return messaging.Message(
        **target,
        data={"k": "v", "url": "https://x.test"},
        notification=messaging.Notification(title="t", body="b", image="https://x.test/i"),
        android=messaging.AndroidConfig(
            collapse_key="c",
            priority="high",
            ttl=ttl,
            notification=messaging.AndroidNotification(
                tag="t",
                notification_count=3,
                visibility="private",
                priority="high",
                sound="chime",
                image="https://x.test/a.png",
            ),
        ),
        apns=messaging.APNSConfig(
            headers={"apns-priority": "5", "apns-expiration": "0"},
            payload=messaging.APNSPayload(
                aps=messaging.Aps(
                    badge=badge, sound="chime.caf", thread_id="th", mutable_content=True
                )
            ),
            fcm_options=messaging.APNSFCMOptions(image="https://x.test/i.png"),
        ),
        webpush=messaging.WebpushConfig(
            headers={"TTL": "60", "Urgency": "normal"},
            notification=messaging.WebpushNotification(icon="https://x.test/i.png"),
            fcm_options=messaging.WebpushFCMOptions(link="https://x.test"),
        ),
    )


@pytest.mark.parametrize(
    ("ttl", "badge"),
    [(timedelta(0), 0), (timedelta(seconds=2_419_200), 99_999), (timedelta(seconds=3.5), 1)],
)
def test_fcm_accepts_the_ends_of_each_options_range(ttl: timedelta, badge: int) -> None:
    """A TTL of 0 ("now or never") and of 4 weeks, a badge of 0 (clears it): firebase-admin's
    own encoding of them passes."""
    message = _rich_message({"fid": FID}, ttl=ttl, badge=badge)
    body = {"message": messaging._MessagingService.encode_message(message)}
    assert fcm_rules.check(body) is None, body


# --- APNs ---------------------------------------------------------------------

DEVICE = "a8b2cd3e" * 8
TOPIC = "com.example.app"


def _headers(**extra: str) -> dict[str, str]:
    return {"apns-push-type": "alert", "apns-topic": TOPIC, **extra}


_BODY = json.dumps({"aps": {"alert": "hi"}}).encode()
APNS_HEADER_EXAMPLES: dict[str, list[tuple[dict[str, str], bytes]]] = {
    "push_type": [({"apns-topic": TOPIC}, _BODY), (_headers(**{"apns-push-type": "x"}), _BODY)],
    "priority": [
        (_headers(**{"apns-priority": "7"}), _BODY),
        (_headers(**{"apns-priority": "high"}), _BODY),
        (_headers(**{"apns-push-type": "background", "apns-priority": "10"}), _BODY),
        (_headers(**{"apns-priority": "10"}), b'{"aps": {"content-available": 1}}'),
    ],
    "collapse_id": [(_headers(**{"apns-collapse-id": "c" * 65}), _BODY)],
    "expiration": [
        (_headers(**{"apns-expiration": "tomorrow"}), _BODY),
        (_headers(**{"apns-expiration": "-1"}), _BODY),
        (_headers(**{"apns-expiration": "1.7e9"}), _BODY),
    ],
    "apns_id": [(_headers(**{"apns-id": "not-a-uuid"}), _BODY)],
    "payload_empty": [(_headers(), b""), (_headers(), b'{"alert": "no aps"}')],
    "payload_size": [
        (_headers(), json.dumps({"aps": {"alert": "x" * 4100}}).encode()),
        (_headers(**{"apns-push-type": "voip"}), json.dumps({"aps": {}, "x": "y" * 5200}).encode()),
    ],
}
APNS_REQUEST_EXAMPLES: dict[str, list[tuple[str, str | None]]] = {
    "path": [("POST", None)],
    "method": [("GET", DEVICE)],
    "device_token": [("POST", "abc"), ("POST", "zz" * 32)],
}


@pytest.mark.parametrize(
    ("rule", "headers", "body"),
    [(rule, h, b) for rule, cases in APNS_HEADER_EXAMPLES.items() for h, b in cases],
)
def test_apns_refuses_bad_headers_and_payloads(
    rule: str, headers: dict[str, str], body: bytes
) -> None:
    refused = apns_rules.check_headers(headers, body)
    assert refused is not None
    assert refused.id == rule


@pytest.mark.parametrize(
    ("rule", "method", "token"),
    [(rule, m, t) for rule, cases in APNS_REQUEST_EXAMPLES.items() for m, t in cases],
)
def test_apns_refuses_bad_request_lines(rule: str, method: str, token: str | None) -> None:
    refused = apns_rules.check_request(method, token)
    assert refused is not None
    assert refused.id == rule


@pytest.mark.parametrize(
    "options",
    [
        {"apns-expiration": "0"},
        {"apns-expiration": str(int(time.time()) + 3600), "apns-priority": "10"},
        {"apns-priority": "5"},
        {"apns-priority": "1"},
    ],
)
def test_apns_accepts_what_aioapns_sends(options: dict[str, str]) -> None:
    headers = _headers(**{"apns-id": str(uuid.uuid4()), **options})
    aps = {
        "alert": {"title": "é", "body": "b"},
        "badge": 0,
        "sound": "chime.caf",
        "thread-id": "order-42",
        "mutable-content": 1,
    }
    body = json.dumps({"aps": aps, "image": "https://x.test/i.png"}, ensure_ascii=False)
    assert apns_rules.check_request("POST", DEVICE) is None
    assert apns_rules.check_headers(headers, body.encode()) is None


def test_apns_takes_priority_5_for_a_background_push() -> None:
    silent = b'{"aps": {"content-available": 1}}'
    background = _headers(**{"apns-push-type": "background", "apns-priority": "5"})
    assert apns_rules.check_headers(background, silent) is None
    assert apns_rules.check_headers(_headers(**{"apns-priority": "5"}), silent) is None


def _sim_with_key(**spec: float) -> tuple[PushSim, Any]:
    sim = PushSim(SimState())
    key = apns_key()
    sim.apns_keys[key.key_id] = ApnsKeySpec(
        team_id=key.team_id, public_key_pem=key.public_key_pem, topics=[TOPIC], **spec
    )
    return sim, key


def _provider_token(
    key: Any, iat: float, *, team: str | None = None, kid: str | None = None
) -> str:
    return jwt.encode(
        {"iss": team or key.team_id, "iat": int(iat)},
        key.private_key_pem,
        algorithm="ES256",
        headers={"kid": kid or key.key_id},
    )


def test_apns_provider_token_rules() -> None:
    sim, key = _sim_with_key()
    now = time.time()

    def refused(token: str, topic: str = TOPIC) -> str | None:
        refusal = sim._check_provider_token(f"bearer {token}" if token else "", topic)
        return refusal.id if refusal else None

    assert refused("") == "missing_provider_token"
    assert refused(_provider_token(key, now, team="OTHERTEAM1")) == "invalid_provider_token"
    assert refused(_provider_token(key, now, kid="UNKNOWN123")) == "invalid_provider_token"
    assert refused(_provider_token(apns_key(key.team_id), now, kid=key.key_id)) == (
        "invalid_provider_token"  # signed by another key
    )
    assert refused(_provider_token(key, now - 3700)) == "expired_provider_token"
    # That expired token was the key's first: a new one 20 minutes later is refused.
    sim.apns_newest.clear()
    first = _provider_token(key, now)
    assert refused(first) is None
    assert refused(first) is None  # the same token again, any number of times
    assert refused(_provider_token(key, now - 1)) == "provider_token_updates"
    assert refused(first, topic="") == "missing_topic"
    assert refused(first, topic="com.other.app") == "topic"
    assert sim.apns_refused_updates == {key.key_id: 1}


def test_every_apns_rule_has_a_request_that_breaks_it() -> None:
    provider_token_rules = {
        "missing_provider_token",
        "invalid_provider_token",
        "expired_provider_token",
        "provider_token_updates",
        "missing_topic",
        "topic",
    }
    covered = set(APNS_HEADER_EXAMPLES) | set(APNS_REQUEST_EXAMPLES) | provider_token_rules
    assert covered == set(apns_rules.RULES)


# --- WhatsApp -----------------------------------------------------------------

NUMBER, WABA, ACCESS = "100000000000001", "200000000000001", "wa-token"
TEMPLATE_BODY = "Order {{1}} costs {{2}}."


@pytest.fixture
def graph() -> TestClient:
    client = TestClient(create_sim_app())
    client.put(f"/_sim/whatsapp/numbers/{NUMBER}", json={"waba_id": WABA, "access_token": ACCESS})
    client.post(
        "/_sim/whatsapp/templates",
        json=[
            {"waba_id": WABA, "name": "order", "language": "en", "body_text": TEMPLATE_BODY},
            {"waba_id": WABA, "name": "held", "status": "PAUSED", "body_text": "x"},
            {"waba_id": WABA, "name": "gone", "status": "REJECTED", "body_text": "x"},
        ],
    )
    return client


def _template(name: str = "order", *params: Any, language: str = "en") -> dict[str, Any]:
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if params:
        template["components"] = [{"type": "body", "parameters": list(params)}]
    return {"messaging_product": "whatsapp", "to": "919876543210", "type": "template",
            "template": template}  # fmt: skip


def _p(text: Any) -> dict[str, Any]:
    return {"type": "text", "text": text}


WA_EXAMPLES: dict[str, dict[str, Any]] = {
    "product": {"body": {**_template("order", _p("A"), _p("B")), "messaging_product": "sms"}},
    "recipient": {"body": {**_template("order", _p("A"), _p("B")), "to": "12ab"}},
    "message_type": {"body": {**_template(), "type": "sticker"}},
    "template_fields": {"body": {**_template(), "template": {"name": "order"}}},
    "template_exists": {"body": _template("order", _p("A"), _p("B"), language="fr")},
    "template_paused": {"body": _template("held")},
    "template_disabled": {"body": _template("gone")},
    "parameter_type": {"body": _template("order", {"type": "currency"}, _p("B"))},
    "parameter_empty": {"body": _template("order", _p(""), _p("B"))},
    "parameter_format": {"body": _template("order", _p("line\nbreak"), _p("B"))},
    "parameter_count": {"body": _template("order", _p("A"))},
    "body_length": {"body": _template("order", _p("A" * 600), _p("B" * 600))},
    "text_body": {"body": {"messaging_product": "whatsapp", "to": "919876543210", "type": "text"}},
    "text_length": {
        "body": {
            "messaging_product": "whatsapp",
            "to": "919876543210",
            "type": "text",
            "text": {"body": "x" * 4097},
        }
    },
    "window": {
        "body": {
            "messaging_product": "whatsapp",
            "to": "919876543210",
            "type": "text",
            "text": {"body": "hi"},
        }
    },
    "callback_data": {
        "body": {**_template("order", _p("A"), _p("B")), "biz_opaque_callback_data": "x" * 513}
    },
    "version": {"version": "v99.0", "body": _template("order", _p("A"), _p("B"))},
    "number": {"number": "999", "body": _template("order", _p("A"), _p("B"))},
    "access_token": {"token": "wrong", "body": _template("order", _p("A"), _p("B"))},
}


def _post(graph: TestClient, case: dict[str, Any]) -> Any:
    version, number = case.get("version", "v21.0"), case.get("number", NUMBER)
    return graph.post(
        f"/{version}/{number}/messages",
        json=case["body"],
        headers={"Authorization": f"Bearer {case.get('token', ACCESS)}"},
    )


@pytest.mark.parametrize("rule", sorted(WA_EXAMPLES))
def test_whatsapp_refuses_what_meta_refuses(graph: TestClient, rule: str) -> None:
    response = _post(graph, WA_EXAMPLES[rule])
    expected = whatsapp_rules.RULES[rule]
    assert response.status_code == expected.status, response.text
    error = response.json()["error"]
    assert error["code"] == int(expected.error)
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]


def test_whatsapp_pair_rate_allows_a_burst_of_45_then_refuses(graph: TestClient) -> None:
    ok = _template("order", _p("A"), _p("B"))
    answers = [_post(graph, {"body": ok}).status_code for _ in range(46)]
    assert answers == [200] * 45 + [429]
    refused = _post(graph, {"body": ok}).json()["error"]
    assert refused["code"] == 131056
    # Another recipient of the same number is not held back.
    assert _post(graph, {"body": {**ok, "to": "919876543211"}}).status_code == 200


def test_whatsapp_throughput_of_the_number(graph: TestClient) -> None:
    graph.put(
        f"/_sim/whatsapp/numbers/{NUMBER}",
        json={"waba_id": WABA, "access_token": ACCESS, "throughput_per_s": 5},
    )
    answers = [
        _post(graph, {"body": {**_template("order", _p("A"), _p("B")), "to": f"91987654{i:04d}"}})
        for i in range(8)
    ]
    codes = [a.json()["error"]["code"] for a in answers if a.status_code != 200]
    assert 130429 in codes
    assert sum(a.status_code == 200 for a in answers) >= 5


def test_whatsapp_takes_callback_data_of_512_characters_and_no_other_type(
    graph: TestClient,
) -> None:
    ok = _template("order", _p("A"), _p("B"))
    assert _post(graph, {"body": {**ok, "biz_opaque_callback_data": "x" * 512}}).status_code == 200
    refused = _post(graph, {"body": {**ok, "biz_opaque_callback_data": 7}})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == 100


def test_whatsapp_accepts_a_valid_template_send(graph: TestClient) -> None:
    response = _post(graph, {"body": _template("order", _p("ORD-1"), _p("$4  .99"))})
    assert response.status_code == 200, response.text
    assert response.json()["messages"][0]["id"].startswith("wamid.")


def test_every_whatsapp_rule_has_a_request_that_breaks_it() -> None:
    rate_rules = {"pair_rate", "throughput"}
    assert set(WA_EXAMPLES) | rate_rules == set(whatsapp_rules.RULES)
