"""Screenshots of Flower after the demo's sends, for the README (docs/flower-*.png).

Starts `dispatch up --demo` on free ports (it sends the spec's WhatsApp and push examples),
then has headless Chromium (Debian's `chromium` package: apt-get install chromium) load
Flower's task list and the whatsapp.send task page with the demo's generated login.

    .venv/bin/python scripts/flower_screenshot.py [OUT_DIR]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker.stack.devstack import demo_stack


def _task(url: str, auth: tuple[str, str], name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        tasks = httpx.get(f"{url}/api/tasks", auth=auth, timeout=5).json()
        done = [t for t in tasks.values() if t["name"] == name and t["state"] == "SUCCESS"]
        if done:
            return dict(done[0])
        time.sleep(0.2)
    raise SystemExit(f"Flower never listed a finished {name}")


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs").resolve()
    browser = shutil.which("chromium")
    if browser is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, demo_stack(Path(tmp)) as stack:
        found = re.search(r"Flower on (\S+) \(user (\S+), password (\S+)\)", stack.output)
        if found is None:
            raise SystemExit("dispatch up did not start Flower")
        url, user, password = found.groups()
        task = _task(url, (user, password), "whatsapp.send")
        host = url.removeprefix("http://")
        for name, path in (
            ("flower-tasks.png", "/tasks"),
            ("flower-task.png", f"/task/{task['uuid']}"),
        ):
            subprocess.run(
                [
                    browser,
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1400,1000",
                    "--virtual-time-budget=4000",
                    f"--screenshot={out / name}",
                    f"http://{user}:{password}@{host}{path}",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            print(f"wrote {out / name}")
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
