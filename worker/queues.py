"""The broker's queues: transactional sends, and campaign (bulk) jobs on workers of their own."""

from __future__ import annotations

TRANSACTIONAL = "transactional"
BULK = "bulk"
