"""What a rule table is: each simulated provider lists the rules it enforces, one per
documented refusal, with the provider's own error for it (``fcm_rules``, ``apns_rules``,
``whatsapp_rules``). A check names the rule that refused a request; the provider module
turns it into that provider's error body. ``tests/unit/test_sim_rules.py`` holds a request
that breaks each rule, and fails if a rule has none."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    refuses: str  # what the provider documents as refused
    error: str  # the provider's error: FCM status/errorCode, APNs reason, WhatsApp code
    status: int  # the HTTP status it comes with


@dataclass(frozen=True)
class Refusal:
    rule: Rule
    message: str  # the provider's wording for this case

    @property
    def id(self) -> str:
        return self.rule.id


def table(*rules: Rule) -> dict[str, Rule]:
    return {rule.id: rule for rule in rules}
