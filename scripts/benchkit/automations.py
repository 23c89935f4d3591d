"""The automation figures: N contacts enrolled at once into "wait W s, then tag", the
bulk worker's memory sampled throughout, and how late each post-wait step ran.

Run by scripts/bench.py against its stack (an account `demo`, contacts tagged `auto`):
    python benchkit/automations.py --count 100000 --wait 10
prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from worker.config import get_settings
from worker.ids import new_id
from worker.models.automations import AutomationCreate
from worker.store import automations, keys
from worker.store.client import create_redis

CHUNK = 2000


async def main(account: str, tag: str, count: int, wait_s: float) -> dict[str, float]:
    redis = create_redis(get_settings())
    automation_id = new_id("aut")
    body = AutomationCreate.model_validate(
        {
            "name": "bench wait then tag",
            "trigger": {"type": "manual"},
            "steps": [{"type": "wait", "seconds": wait_s}, {"type": "add_tag", "tag": "waited"}],
        }
    )
    await automations.create(redis, account, automation_id, body)
    automation = await automations.load(redis, account, automation_id)
    assert automation is not None
    await automations.set_active(redis, automation, True)
    contact_ids = [str(c) for c in await redis.zrange(keys.tag_members(account, tag), 0, count - 1)]
    started = time.time()
    runs: list[str] = []
    for start in range(0, len(contact_ids), CHUNK):
        pairs = [(c, new_id("run")) for c in contact_ids[start : start + CHUNK]]
        outcomes = await automations.enroll_many(redis, account, automation_id, pairs)
        runs += [run_id for (_, run_id), ok in zip(pairs, outcomes, strict=True) if ok == "ok"]
    enrolled_s = time.time() - started
    # Every run done (the counts of the last step say so).
    deadline = time.time() + wait_s + 600
    while time.time() < deadline:
        counts = await automations.step_counts(redis, account, automation_id)
        if counts.get(1, {}).get("done", 0) >= len(runs):
            break
        await asyncio.sleep(0.5)
    finished_s = time.time() - started
    late: list[float] = []
    for start in range(0, len(runs), CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for run_id in runs[start : start + CHUNK]:
                pipe.hmget(keys.run_steps(account, run_id), "0", "1")
            for waited, after in await pipe.execute():
                if waited and after:
                    due = json.loads(waited)["waited_until"]
                    late.append(json.loads(after)["at"] - due)
    await redis.aclose()
    late.sort()

    def pct(q: float) -> float:
        return late[min(len(late) - 1, int(q * len(late)))] if late else float("nan")

    return {
        "runs": len(runs),
        "completed": len(late),
        "enroll_s": enrolled_s,
        "total_s": finished_s,
        "late_p50_s": pct(0.5),
        "late_p99_s": pct(0.99),
        "late_max_s": late[-1] if late else float("nan"),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--account", default="demo")
    parser.add_argument("--tag", default="auto")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--wait", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.account, args.tag, args.count, args.wait))))
