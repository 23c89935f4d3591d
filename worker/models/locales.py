"""A contact's ``locale`` picks a template's language when the sender names only the
template (docs/audience.md). The order, first synced and approved wins:

1. the locale itself (``pt_BR``; ``pt-BR`` is read the same),
2. its language alone (``pt``),
3. another variant of that language, the first in alphabetical order (``pt_PT``),
4. ``en``, then ``en_US``.

None of them synced: a single send is refused ``template_not_found`` (naming the
languages the template has), a campaign skips the contact (``no_template_language``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection

# The contact hash field of a contact's locale (its attribute ``locale``, JSON).
LOCALE_FIELD = "attr:locale"
DEFAULTS = ("en", "en_US")
_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8}){0,3}$")


def normalise(value: str | None) -> str | None:
    """``pt-br`` → ``pt_BR`` (WhatsApp's spelling); None for what is not a locale."""
    if not value or not _LOCALE_RE.match(value):
        return None
    language, *rest = value.replace("-", "_").split("_")
    parts = [language.lower()] + [p.upper() if len(p) == 2 else p.title() for p in rest]
    return "_".join(parts)


def stored_locale(stored: str | None) -> str | None:
    """The locale of a contact whose ``locale`` attribute is ``stored`` (JSON)."""
    if not stored:
        return None
    try:
        value = json.loads(stored)
    except ValueError:
        return None
    return normalise(value) if isinstance(value, str) else None


def pick(locale: str | None, available: Collection[str]) -> str | None:
    """The language to send in, of ``available`` (the template's synced, approved ones)."""
    order: list[str] = []
    if locale:
        base = locale.split("_")[0]
        order += [locale, base]
        order += sorted(a for a in available if a.split("_")[0] == base)
    order += DEFAULTS
    return next((language for language in order if language in available), None)
