"""Campaign content per contact: ``{{field}}`` and ``{{field|default}}`` placeholders.

A field is one of the contact's own (``id``, ``name``, ``phone``, ``email``) or an
attribute. A placeholder whose field the contact lacks, and that has no default,
makes the contact *skipped* (``missing_field``): a message reading "Hi ," is worse
than none.
"""

from __future__ import annotations

import json
from typing import Any

from worker.models import PLACEHOLDER_RE


class MissingField(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def has_placeholders(*texts: str | None) -> bool:
    return any(t is not None and PLACEHOLDER_RE.search(t) for t in texts)


def placeholder_names(*texts: str | None) -> set[str]:
    """The fields the placeholders of ``texts`` draw from."""
    return {m.group(1) for t in texts if t is not None for m in PLACEHOLDER_RE.finditer(t)}


def stored_fields(names: set[str]) -> list[str]:
    """The contact hash's fields ``fields_of`` makes ``names`` from (an own field, or an
    attribute of that name: both are read, as ``fields_of`` would see either)."""
    return sorted({*names, *(f"attr:{name}" for name in names)})


def fields_of(raw: dict[str, str]) -> dict[str, str]:
    """A stored contact hash as the values placeholders draw from."""
    values = {k: v for k, v in raw.items() if not k.startswith("attr:")}
    for name, value in raw.items():
        if name.startswith("attr:"):
            decoded = json.loads(value)
            values[name[5:]] = decoded if isinstance(decoded, str) else json.dumps(decoded)
    return values


def render(text: str, values: dict[str, str]) -> str:
    def one(match: Any) -> str:
        name, default = match.group(1), match.group(2)
        value = values.get(name)
        if value in (None, ""):
            if default is None:
                raise MissingField(name)
            return str(default)
        return str(value)

    return PLACEHOLDER_RE.sub(one, text)


def render_data(data: dict[str, Any] | None, values: dict[str, str]) -> dict[str, Any] | None:
    """The push ``data`` object with placeholders in its string values filled in."""
    if data is None:
        return None
    return {k: render(v, values) if isinstance(v, str) else v for k, v in data.items()}
