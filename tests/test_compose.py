"""The compose file validates with the example environment, and refuses to without a
Flower password."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary is not None, "docker-compose is part of this machine's tools"
    return subprocess.run(
        [binary, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_compose_file_validates_with_the_example_env() -> None:
    done = _config("--env-file", str(ROOT / ".env.example"), "config", "-q")
    assert done.returncode == 0, done.stderr
    services = _config("--env-file", str(ROOT / ".env.example"), "config", "--services")
    assert set(services.stdout.split()) >= {
        "redis",
        "api",
        "worker-transactional",
        "worker-bulk",
        "beat",
        "flower",
    }
    with_sim = _config(
        "--env-file", str(ROOT / ".env.example"), "--profile", "sim", "config", "--services"
    )
    assert "sim" in with_sim.stdout.split()


def test_compose_refuses_to_run_flower_without_a_password(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _config("--env-file", str(empty), "config", "-q")
    assert done.returncode != 0
    assert "DISPATCH_FLOWER_BASIC_AUTH" in done.stderr
