"""Jobs and stream entries that failed on a bug: kept per account for operators.

A job that raises something other than an infrastructure error is not retried blindly
(it would fail the same way): what it worked on is failed or flagged by its crash
recorder (``worker.delivery.failures``) and the error lands here, where `dispatch status`
shows it. The list keeps the newest ``KEEP`` per account; the count is kept for ever.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from worker.store import keys

KEEP = 100
# A traceback's last line is enough to find it in the logs; the rest would fill Redis.
_ERROR_MAX = 500


@dataclass(frozen=True)
class JobError:
    account: str  # "-" when the job or entry named no valid account
    at: float
    job: str  # the task name, or "contact_events" for a stream entry
    id: str  # the job's message/batch/run id, or the stream entry's id
    error: str


async def record(
    redis: Redis, account_id: str | None, job: str, job_id: str, exc: BaseException | str
) -> None:
    error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    entry = JobError(account_id or "-", time.time(), job, job_id, error[:_ERROR_MAX])
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(keys.job_errors(account_id), json.dumps(entry.__dict__))
        pipe.ltrim(keys.job_errors(account_id), 0, KEEP - 1)
        pipe.hincrby(keys.job_error_counts(), account_id or "-", 1)
        await pipe.execute()


async def counts(redis: Redis) -> dict[str, int]:
    raw = cast(dict[str, str], await redis.hgetall(keys.job_error_counts()))
    return {account: int(n) for account, n in raw.items()}


async def newest(redis: Redis, accounts: list[str], limit: int = 10) -> list[JobError]:
    """The newest ``limit`` job errors of these accounts (``-``: of none), newest first."""
    async with redis.pipeline(transaction=False) as pipe:
        for account in accounts:
            pipe.lrange(keys.job_errors(None if account == "-" else account), 0, limit - 1)
        lists = cast(list[list[str]], await pipe.execute())
    found = [JobError(**json.loads(item)) for items in lists for item in items]
    return sorted(found, key=lambda e: e.at, reverse=True)[:limit]
