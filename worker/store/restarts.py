"""What `dispatch up` restarted, for `dispatch status`: one hash, a JSON value per child.

The supervisor writes it with a synchronous client (it has no event loop); status reads it
with the async one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import cast

import redis as sync_redis
from redis.asyncio import Redis

from worker.store import keys


@dataclass(frozen=True)
class ChildRestarts:
    name: str
    restarts: int
    last_exit_code: int  # negative: killed by that signal, as subprocess reports it
    last_exit: str  # the same in words: "exit code 1", "killed by SIGKILL"
    last_exit_at: float  # Unix time


def write(client: sync_redis.Redis, children: list[ChildRestarts]) -> None:
    """Replace the whole record in one transaction: a run's first write also clears what
    an earlier run left."""
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.supervisor_restarts())
        if children:
            fields = {c.name: json.dumps(asdict(c)) for c in children}
            pipe.hset(keys.supervisor_restarts(), mapping=fields)  # type: ignore[arg-type]
        pipe.execute()


async def read(redis: Redis) -> list[ChildRestarts]:
    raw = cast(dict[str, str], await redis.hgetall(keys.supervisor_restarts()))
    return sorted((ChildRestarts(**json.loads(v)) for v in raw.values()), key=lambda c: c.name)
