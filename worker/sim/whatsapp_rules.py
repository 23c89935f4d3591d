"""The rules the WhatsApp Cloud API (Graph API) enforces on ``POST /{version}/{number}/messages``.

Meta answers a refusal with its error envelope (``error.code``, ``type``, ``message``,
``error_data.details``, ``fbtrace_id``): ``whatsapp.error_envelope`` builds it from the
code below. The throughput and pair-rate rules need the number's recent sends
(``WhatsAppSim``); the rest are checked on the request alone (``check_body``).
"""

from __future__ import annotations

import re
from typing import Any

from worker.sim.rules import Refusal, Rule, table

# Graph API versions: v<major>.0; a version past the newest is refused (an old one is
# served by the oldest still available, as Meta does).
NEWEST_GRAPH_VERSION = 24
_VERSION = re.compile(r"^v(\d+)\.0$")
BODY_MAX_CHARS = 1024
TEXT_MAX_CHARS = 4096
# biz_opaque_callback_data: an arbitrary string the sender attaches to a message, echoed in
# the message's status webhooks; Meta takes at most 512 characters.
CALLBACK_DATA_MAX_CHARS = 512
_PARAMETER_FORBIDDEN = re.compile(r"[\n\t]| {5,}")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
# Meta's pair rate: about one message per 6 s to one recipient, with bursts of up to 45.
PAIR_INTERVAL_S = 6.0
PAIR_BURST = 45
DEFAULT_THROUGHPUT_PER_S = 80.0

RULES = table(
    Rule("version", "a Graph API version that does not exist", "2500", 400),
    Rule("number", "an unknown phone number id", "100", 400),
    Rule("access_token", "an access token that is not the number's", "190", 401),
    Rule("product", "messaging_product other than 'whatsapp'", "100", 400),
    Rule("recipient", "'to' that is not 7–15 digits", "100", 400),
    Rule("message_type", "a message type other than template or text", "131009", 400),
    Rule(
        "callback_data",
        "biz_opaque_callback_data that is not a string of at most 512 characters",
        "100",
        400,
    ),
    Rule("template_fields", "a template without a name or a language code", "131008", 400),
    Rule("template_exists", "a template name/language that does not exist", "132001", 404),
    Rule("template_paused", "a paused template", "132015", 400),
    Rule("template_disabled", "a template that is not approved", "132016", 400),
    Rule("parameter_type", "a body parameter that is not of type text", "131009", 400),
    Rule("parameter_empty", "an empty body parameter", "131008", 400),
    Rule(
        "parameter_format",
        "a parameter with a newline, a tab or more than 4 consecutive spaces",
        "132018",
        400,
    ),
    Rule("parameter_count", "a parameter count other than the template's", "132000", 400),
    Rule("body_length", "a filled-in body over 1,024 characters", "132005", 400),
    Rule("text_body", "a text message without a body", "131008", 400),
    Rule("text_length", "a text body over 4,096 characters", "100", 400),
    Rule("window", "free-form text more than 24 h after the customer wrote", "131047", 400),
    Rule("throughput", "more messages per second than the number's throughput", "130429", 429),
    Rule(
        "pair_rate", "more than ~1 message per 6 s to one recipient (bursts of 45)", "131056", 429
    ),
)


def refusal(rule: str, message: str | None = None) -> Refusal:
    return Refusal(RULES[rule], message or "")


def check_version(version: str) -> Refusal | None:
    match = _VERSION.fullmatch(version)
    if match is None or int(match.group(1)) > NEWEST_GRAPH_VERSION:
        return refusal("version", f"Unknown path components: /{version}")
    return None


def check_callback_data(body: dict[str, Any]) -> Refusal | None:
    value = body.get("biz_opaque_callback_data")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > CALLBACK_DATA_MAX_CHARS:
        return refusal(
            "callback_data",
            "Param biz_opaque_callback_data must be a string of at most 512 characters.",
        )
    return None


def check_template_parameters(body_text: str, components: Any) -> Refusal | None:
    """The body parameters against the template's BODY text."""
    given: list[str] = []
    for component in components or []:
        if not isinstance(component, dict) or component.get("type") != "body":
            continue
        for parameter in component.get("parameters") or []:
            if not isinstance(parameter, dict) or parameter.get("type") != "text":
                return refusal("parameter_type")
            text = parameter.get("text")
            if not isinstance(text, str) or not text:
                return refusal("parameter_empty")
            if _PARAMETER_FORBIDDEN.search(text):
                return refusal("parameter_format")
            given.append(text)
    if len(given) != len(set(_PLACEHOLDER.findall(body_text))):
        return refusal("parameter_count")

    def fill(match: re.Match[str]) -> str:
        index = int(match.group(1)) if match.group(1).isdigit() else 0
        return given[index - 1] if 0 < index <= len(given) else ""

    if len(_PLACEHOLDER.sub(fill, body_text)) > BODY_MAX_CHARS:
        return refusal("body_length")
    return None


def to_digits(body: dict[str, Any]) -> str | None:
    to = str(body.get("to") or "").removeprefix("+")
    return to if to.isdigit() and 7 <= len(to) <= 15 else None
