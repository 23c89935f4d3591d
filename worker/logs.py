"""Logging setup shared by every process (JSON lines come with the operators' issue)."""

from __future__ import annotations

import logging

# Libraries that log every request at INFO: one line per provider call drowns the
# lines that matter, and their URLs carry ids we would rather not spread around.
_NOISY = ("httpx", "httpcore", "hpack")


def quiet_libraries() -> None:
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_libraries()
