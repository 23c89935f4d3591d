"""Where a process group's metrics live, set before the group counts anything.

prometheus_client's multiprocess mode is chosen when it is imported, from the
``PROMETHEUS_MULTIPROC_DIR`` environment variable of the process (and inherited by the
children it forks or spawns). The commands that start a group of processes (`dispatch
worker`, `dispatch api`) call ``prepare`` before serving; the CLI has imported it by then
(its commands share the delivery code), so the value class is chosen again. Our metrics
all have labels, and a labelled metric creates its values on first use, after this.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from worker.config import Settings


def directory(settings: Settings, group: str) -> Path:
    return settings.data_dir / "metrics" / group


def prepare(settings: Settings, group: str) -> Path:
    """An empty directory for ``group``'s files (a restart starts its counters at zero, as
    Prometheus expects of a restarted target)."""
    path = directory(settings, group)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path
