"""The compose file renders and validates with the example environment, and refuses to
without a Flower password — checked with what `make` installs (no Docker needed): the
compose specification's JSON schema and compose's interpolation rules
(`tests/compose_config.py`). A missing package fails the import here: never a skip."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from tests.compose_config import ComposeError, interpolate, render

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
EXAMPLE_ENV = ROOT / ".env.example"


SECRETS = {
    "DISPATCH_FLOWER_BASIC_AUTH": "ops:Xq9-generated-pw",
    "DISPATCH_REDIS_PASSWORD": "r3dis-generated-password",
    "DISPATCH_SECRET_KEY": "bW9ja2tleW1vY2trZXltb2Nra2V5bW9ja2tleW1vY2s=",
}


def _env_from_the_example(tmp_path: Path, **without: bool) -> Path:
    """What a user does: copy .env.example and set the required secrets."""
    env = tmp_path / ".env"
    lines = [f"{k}={v}" for k, v in SECRETS.items() if not without.get(k)]
    env.write_text(EXAMPLE_ENV.read_text() + "\n".join(lines) + "\n")
    return env


def test_compose_file_validates_with_the_example_env_and_a_flower_password(
    tmp_path: Path,
) -> None:
    compose = render(COMPOSE, _env_from_the_example(tmp_path))
    assert compose.services() >= {
        "redis",
        "api",
        "worker-transactional",
        "worker-bulk",
        "worker-webhooks",
        "beat",
        "flower",
    }
    assert "sim" not in compose.services()
    assert "sim" in compose.services(profiles=["sim"])
    flower_env = compose.model["services"]["flower"]["environment"]
    assert flower_env["DISPATCH_FLOWER_BASIC_AUTH"] == "ops:Xq9-generated-pw"
    api_env = compose.model["services"]["api"]["environment"]
    assert api_env["DISPATCH_REDIS_URL"] == "redis://:r3dis-generated-password@redis:6379/0"
    assert api_env["DISPATCH_SECRET_KEY"] == SECRETS["DISPATCH_SECRET_KEY"]
    redis_command = compose.model["services"]["redis"]["command"]
    assert redis_command[redis_command.index("--requirepass") + 1] == "r3dis-generated-password"
    # Bounded, and full means refusing writes, never evicting queued messages.
    assert redis_command[redis_command.index("--maxmemory") + 1] == "512mb"
    assert redis_command[redis_command.index("--maxmemory-policy") + 1] == "noeviction"


@pytest.mark.parametrize("missing", ["DISPATCH_REDIS_PASSWORD", "DISPATCH_SECRET_KEY"])
def test_compose_refuses_to_run_without_each_secret(tmp_path: Path, missing: str) -> None:
    with pytest.raises(ComposeError, match=missing):
        render(COMPOSE, _env_from_the_example(tmp_path, **{missing: True}))


def test_compose_refuses_to_run_flower_without_a_password(tmp_path: Path) -> None:
    # The example file alone has no secret at all: copied as is, compose refuses to start.
    with pytest.raises(ComposeError, match="is missing a value"):
        render(COMPOSE, EXAMPLE_ENV)
    without = _env_from_the_example(tmp_path, DISPATCH_FLOWER_BASIC_AUTH=True)
    with pytest.raises(ComposeError, match="DISPATCH_FLOWER_BASIC_AUTH"):
        render(COMPOSE, without)
    blank = tmp_path / "blank.env"
    blank.write_text(without.read_text() + "DISPATCH_FLOWER_BASIC_AUTH=\n")
    with pytest.raises(ComposeError, match="DISPATCH_FLOWER_BASIC_AUTH"):
        render(COMPOSE, blank)


def test_the_schema_refuses_what_compose_refuses(tmp_path: Path) -> None:
    """The check is not a formality: a misspelt service key fails it."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:"))
    with pytest.raises(jsonschema.ValidationError, match="stop_grace_periods"):
        render(broken, _env_from_the_example(tmp_path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${SET}", "v"),
        ("$SET/x", "v/x"),
        ("$$SET", "$SET"),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${SET:+r}", "r"),
        ("${EMPTY:+r}", ""),
        ("${EMPTY+r}", "r"),
        ("${UNSET:-${SET}}", "v"),
        ("${UNSET}", ""),
    ],
)
def test_interpolation_follows_the_compose_rules(text: str, expected: str) -> None:
    assert interpolate(text, {"SET": "v", "EMPTY": ""}) == expected


@pytest.mark.parametrize("text", ["${UNSET:?needed}", "${EMPTY:?needed}", "${UNSET?needed}"])
def test_a_required_variable_missing_is_an_error(text: str) -> None:
    with pytest.raises(ComposeError, match="needed"):
        interpolate(text, {"EMPTY": ""})


def test_a_required_variable_set_empty_without_the_colon_is_accepted() -> None:
    assert interpolate("${EMPTY?needed}", {"EMPTY": ""}) == ""
