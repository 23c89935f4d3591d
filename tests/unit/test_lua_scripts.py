"""Each Lua script is declared once in worker/store/scripts.py, and its file says the same:
a header naming its KEYS and ARGV in the same order, and a body that indexes no KEYS[n]
or ARGV[n] beyond them. A script whose arguments are reordered in one place only fails
here, not as a wrong write in Redis."""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from typing import Any

import pytest

from worker.store import scripts
from worker.store.scripts import DECLARED, Script

LUA = resources.files("worker.store") / "lua"
_INDEX = re.compile(r"\b(KEYS|ARGV)\[([^\]]+)\]")
_CONSTANT = re.compile(r"^\s*local\s+(\w+)\s*=\s*([\w\s+]+?)\s*$", re.MULTILINE)
_LOOP_TO_END = re.compile(r"\bfor\s+\w+\s*=\s*([^,]+),\s*#(KEYS|ARGV)\b")
_INCLUDE = re.compile(r"^-- include: (\w+)$", re.MULTILINE)


def _files() -> dict[str, str]:
    return {
        f.name.removesuffix(".lua"): f.read_text() for f in LUA.iterdir() if f.name.endswith(".lua")
    }


def header(text: str) -> dict[str, tuple[str, ...]]:
    """The ``-- KEYS:`` and ``-- ARGV:`` lines of the file's leading comment block, a line
    ending with a comma continued on the next."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    found: dict[str, tuple[str, ...]] = {}
    i = 0
    while i < len(lines):
        match = re.match(r"^(KEYS|ARGV):\s*(.*)$", lines[i])
        i += 1
        if not match:
            continue
        kind, joined = match.groups()
        while joined.endswith(",") and i < len(lines):
            joined += " " + lines[i]
            i += 1
        assert kind not in found, f"{kind} declared twice in the header"
        names = () if joined == "(none)" else tuple(n.strip() for n in joined.split(","))
        found[kind] = names
    return found


def _code(text: str) -> str:
    """The text without its comments (no script has "--" inside a string)."""
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def _value(expr: str, constants: dict[str, int]) -> int | None:
    """An index expression's value when it is a sum of numbers and constants, else None."""
    total = 0
    for term in expr.split("+"):
        term = term.strip()
        if term.isdigit():
            total += int(term)
        elif term in constants:
            total += constants[term]
        else:
            return None
    return total


def index_problems(code: str, keys: tuple[str, ...], args: tuple[str, ...]) -> list[str]:
    """What in ``code`` (comments removed) indexes KEYS or ARGV beyond the declaration."""
    constants: dict[str, int] = {}
    for name, expr in _CONSTANT.findall(code):
        value = _value(expr, constants)
        if value is not None:
            constants[name] = value
    declared = {"KEYS": keys, "ARGV": args}
    fixed = {
        kind: sum(1 for n in names if not n.startswith("*")) for kind, names in declared.items()
    }
    tail = {kind: bool(names) and names[-1].startswith("*") for kind, names in declared.items()}
    problems = []
    for kind, expr in _INDEX.findall(code):
        n = _value(expr, constants)
        if n is None:
            if not tail[kind]:
                problems.append(f"{kind}[{expr}] computed, but {kind} has no variadic tail")
        elif not 1 <= n <= fixed[kind]:
            problems.append(f"{kind}[{expr}] = {kind}[{n}], {fixed[kind]} declared")
    for start, kind in _LOOP_TO_END.findall(code):
        if not tail[kind]:
            problems.append(f"a loop to #{kind}, but {kind} has no variadic tail")
            continue
        n = _value(start, constants)
        if n is not None and n != fixed[kind] + 1:
            problems.append(f"a loop over {kind}'s tail starts at {n}, not {fixed[kind] + 1}")
    return problems


def test_every_file_is_declared_once_and_every_declaration_has_its_file() -> None:
    constants = [v for v in vars(scripts).values() if isinstance(v, Script)]
    assert sorted(s.name for s in constants) == sorted(DECLARED)  # none outside DECLARED
    assert sorted(_files()) == sorted(DECLARED)


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_the_header_names_the_declared_keys_and_args_in_order(name: str) -> None:
    script = DECLARED[name]
    found = header(_files()[name])
    assert found == {"KEYS": script.keys, "ARGV": script.args}, name


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_the_body_indexes_only_declared_keys_and_args(name: str) -> None:
    script = DECLARED[name]
    text = _files()[name]
    # A script including a fragment is checked with the fragment pasted in, and passes
    # the fragment's KEYS and ARGV first.
    for included in _INCLUDE.findall(text):
        fragment = DECLARED[included]
        assert fragment.fragment
        assert script.keys[: len(fragment.keys)] == fragment.keys
        assert script.args[: len(fragment.args)] == fragment.args
    code = _code(scripts.source(name))
    assert index_problems(code, script.keys, script.args) == []


def test_the_index_check_catches_what_it_is_for() -> None:
    assert index_problems("return KEYS[2]", ("a",), ()) == ["KEYS[2] = KEYS[2], 1 declared"]
    assert index_problems("local A = 2\nreturn ARGV[A + 1]", (), ("x", "y")) == [
        "ARGV[A + 1] = ARGV[3], 2 declared"
    ]
    assert index_problems("return ARGV[i]", (), ("x",)) != []
    assert index_problems("for i = 3, #ARGV do end", (), ("x", "*rest")) != []
    assert index_problems("for i = 2, #ARGV do x(ARGV[i]) end", (), ("x", "*rest")) == []
    assert header("-- KEYS: a,\n--   b\n-- ARGV: (none)\nreturn 1") == {
        "KEYS": ("a", "b"),
        "ARGV": (),
    }


def test_missing_or_unexpected_names_raise_before_redis() -> None:
    gcra = scripts.GCRA
    keys = {"tat": "t", "penalty": "p"}
    args = {"interval_ms": 1, "tolerance_ms": 0, "cost": 1, "max_wait_ms": 5}
    assert gcra.pack(keys, args) == (["t", "p"], [1, 0, 1, 5])
    with pytest.raises(TypeError, match=r"gcra\.lua KEYS: missing penalty"):
        gcra.pack({"tat": "t"}, args)
    with pytest.raises(TypeError, match=r"gcra\.lua ARGV: unexpected surprise"):
        gcra.pack(keys, {**args, "surprise": 1})
    not_redis: Any = object()  # reaching Redis would be an AttributeError, not this
    with pytest.raises(TypeError, match="gcra"):
        asyncio.run(gcra.run(not_redis, keys=keys, args={}))
    with pytest.raises(TypeError, match="gcra"):
        gcra.queue(not_redis, keys={}, args=args)


def test_a_variadic_tail_is_a_list() -> None:
    take = scripts.DELAYED_TAKE
    assert take.pack({"delayed": "d"}, {"now": "1", "members": ["a", "b"]}) == (
        ["d"],
        ["1", "a", "b"],
    )
    with pytest.raises(TypeError, match=r"delayed_take\.lua ARGV: members"):
        take.pack({"delayed": "d"}, {"now": "1", "members": "ab"})
    with pytest.raises(TypeError, match=r"automation_lib\.lua"):
        scripts.AUTOMATION_LIB.pack({}, {})


def test_a_declaration_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        Script("gcra")
    with pytest.raises(ValueError, match="bad names"):
        Script("not_a_file", args=("*rest", "after"))
    assert "not_a_file" not in DECLARED
