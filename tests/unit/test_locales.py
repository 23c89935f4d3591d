from __future__ import annotations

import pytest

from worker.models.locales import normalise, pick, stored_locale


@pytest.mark.parametrize(
    ("given", "shown"),
    [("pt-br", "pt_BR"), ("PT_BR", "pt_BR"), ("en", "en"), ("zh-Hant-TW", "zh_Hant_TW")],
)
def test_a_locale_is_spelled_as_whatsapp_spells_it(given: str, shown: str) -> None:
    assert normalise(given) == shown


def test_not_a_locale() -> None:
    assert normalise("../../x") is None
    assert normalise("") is None
    assert stored_locale('"pt-BR"') == "pt_BR"
    assert stored_locale("12") is None
    assert stored_locale("{bad") is None


def test_the_fallback_order() -> None:
    synced = {"pt_PT", "pt_BR", "es", "en_US"}
    assert pick("pt_BR", synced) == "pt_BR"  # the locale itself
    assert pick("es_MX", synced) == "es"  # its language alone
    assert pick("pt_AO", synced) == "pt_BR"  # another variant, alphabetical
    assert pick("fr_FR", synced) == "en_US"  # en, then en_US
    assert pick(None, {"en", "en_US"}) == "en"
    assert pick("fr", {"de"}) is None
