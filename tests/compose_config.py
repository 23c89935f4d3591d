"""`docker compose config` without Docker: what the compose test needs of it, from packages
`make` installs into .venv.

- The file is read as YAML (anchors and `<<` merge keys resolved, as compose does).
- Every string value is interpolated the way the compose specification says, from an
  env file and nothing else: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
  `${VAR:?error}`, `${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}`; defaults
  and replacements may hold further `${…}`. A required variable that is missing (or
  empty, with `:?`) is an error naming it, as compose refuses to render.
- The result is validated against the compose specification's JSON schema, the copy that
  `check-jsonschema` (a maintained package of the python-jsonschema project) vendors.
- Services are listed as `config --services` does: those without `profiles`, plus those
  whose profiles are asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from dotenv import dotenv_values

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ComposeError(Exception):
    """What compose would print before refusing to render the file."""


def compose_schema() -> dict[str, Any]:
    source = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    return schema


def _braced_end(text: str, start: int) -> int:
    """Index of the `}` closing the `${` whose body starts at ``start`` (nesting counted)."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ComposeError(f"invalid interpolation format: unclosed '${{' in {text!r}")


def interpolate(text: str, env: Mapping[str, str | None]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _braced_end(text, i + 2)
            out.append(_expand(text[i + 2 : end], env))
            i = end + 1
        elif bare := _NAME.match(text, i + 1):
            out.append(env.get(bare.group()) or "")
            i = bare.end()
        else:
            raise ComposeError(f"invalid interpolation format for {text!r}: a lone '$'")
    return "".join(out)


def _expand(body: str, env: Mapping[str, str | None]) -> str:
    name = _NAME.match(body)
    if name is None:
        raise ComposeError(f"invalid interpolation format: '${{{body}}}'")
    var, rest = name.group(), body[name.end() :]
    value = env.get(var)
    if not rest:
        return value or ""
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            arg = rest[len(op) :]
            break
    else:
        raise ComposeError(f"invalid interpolation format: '${{{body}}}'")
    unset = value is None or (op.startswith(":") and value == "")
    if op.endswith("-"):
        return interpolate(arg, env) if unset else value or ""
    if op.endswith("+"):
        return "" if unset else interpolate(arg, env)
    if unset:
        raise ComposeError(f"required variable {var} is missing a value: {interpolate(arg, env)}")
    return value or ""


def _interpolate_tree(node: Any, env: Mapping[str, str | None]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


@dataclass(frozen=True)
class Compose:
    model: dict[str, Any]

    def services(self, profiles: Iterable[str] = ()) -> set[str]:
        wanted = set(profiles)
        return {
            name
            for name, service in self.model["services"].items()
            if not service.get("profiles") or wanted & set(service["profiles"])
        }


def render(compose_file: Path, env_file: Path) -> Compose:
    """The file as compose renders it with ``env_file``; raises ComposeError or
    jsonschema.ValidationError where compose would refuse."""
    env = dotenv_values(env_file, interpolate=False)
    raw = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    model = _interpolate_tree(raw, env)
    jsonschema.validate(model, compose_schema())
    return Compose(model)
