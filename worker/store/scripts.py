"""Lua scripts shipped with the package, run by SHA (sent in full only once per server)."""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

_INCLUDE = re.compile(r"^-- include: (\w+)$", re.MULTILINE)


@cache
def source(name: str) -> str:
    """The script's text; a line ``-- include: other`` stands for ``other.lua`` (scripts
    cannot call each other, so what several share is pasted into each)."""
    text = (resources.files("worker.store") / "lua" / f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: source(m.group(1)), text)


@cache
def _sha(name: str) -> str:
    return hashlib.sha1(source(name).encode(), usedforsecurity=False).hexdigest()


async def load(redis: Redis, name: str) -> str:
    """Make sure the server has the script (for EVALSHA in a pipeline); returns its SHA."""
    return str(await redis.script_load(source(name)))


async def run(redis: Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    try:
        return await redis.evalsha(_sha(name), len(keys), *keys, *args)
    except NoScriptError:
        return await redis.eval(source(name), len(keys), *keys, *args)
