"""Every global key (one built without an account) starts with a segment listed in
``keys.GLOBAL_SEGMENTS``, the names no account may take: an account named like one would
have its keys (``dispatch:<account>:…``) mixed with the service's own."""

from __future__ import annotations

import inspect

from worker.store import keys


def _global_builders() -> list[str]:
    names = []
    for name, fn in inspect.getmembers(keys, inspect.isfunction):
        if fn.__module__ != keys.__name__ or name.startswith("_"):
            continue
        params = inspect.signature(fn).parameters
        if "account_id" not in params and inspect.signature(fn).return_annotation == "str":
            names.append(name)
    return names


def test_every_global_key_starts_with_a_reserved_segment() -> None:
    builders = _global_builders()
    assert "delayed" in builders  # the inspection finds them
    for name in builders:
        fn = getattr(keys, name)
        args = [
            "x" if p.annotation in ("str", "str | None") else 1
            for p in inspect.signature(fn).parameters.values()
        ]
        key = fn(*args)
        if not key.startswith(f"{keys.PREFIX}:"):
            continue  # a name only the code uses (template_field) or the broker's
        segment = key.split(":")[1]
        assert segment in keys.GLOBAL_SEGMENTS, f"{name}() → {key}"


def test_an_accounts_keys_never_start_with_a_reserved_segment() -> None:
    assert keys.message("acme", "m1").split(":")[1] == "acme"
    assert not ({"acme"} & keys.GLOBAL_SEGMENTS)
