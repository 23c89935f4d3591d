"""A campaign's audience walk alone: the real fan-out code over a seeded audience, with
the batch jobs published to a queue nobody serves, RSS sampled all along.

    python scripts/benchkit/fanout.py --account bench --tag fanout

Prints one JSON line: fanout_s, contacts, batches, rss_start_mb, rss_peak_mb, rss_end_mb.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

import psutil
from redis.asyncio.client import Pipeline

from worker.config import get_settings
from worker.delivery.fanout import run_fanout
from worker.ids import new_id
from worker.models import CampaignCreate
from worker.runtime.process import Runtime
from worker.store import campaigns
from worker.store.jobs import job_payload

NULL_QUEUE = "bench-null"


def _publish(pipe: Pipeline, task: str, account: str, job_id: str) -> None:
    pipe.lpush(NULL_QUEUE, job_payload(task, account, job_id, NULL_QUEUE))


async def main(account: str, tag: str) -> dict[str, float]:
    settings = get_settings().model_copy(update={"campaign_job_max_s": 3600.0})
    rt = Runtime(settings)
    redis = rt.context.redis
    body = CampaignCreate.model_validate(
        {
            "name": "fan-out bench",
            "channel": "push",
            "content": {"title": "Bench", "message": "Fan-out"},
            "audience": {"segment": {"tag": tag}},
        }
    )
    campaign = await campaigns.create(redis, account, new_id("cmp"), body)
    await campaigns.transition(redis, account, campaign.id, "send")
    me = psutil.Process()
    samples = [me.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            samples.append(me.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    while (await run_fanout(rt.context, account, campaign.id, _publish)).retry_in_s is not None:
        pass
    elapsed = time.perf_counter() - started
    stop.set()
    progress = await campaigns.progress(redis, account, campaign.id)
    loaded = await campaigns.load(redis, account, campaign.id)
    await redis.delete(NULL_QUEUE)
    mb = 1024 * 1024
    return {
        "fanout_s": elapsed,
        "contacts": progress.counts["enqueued"],
        "devices": progress.counts["recipients"],
        "batches": loaded.batches if loaded else 0,
        "rss_start_mb": samples[0] / mb,
        "rss_peak_mb": max(samples) / mb,
        # Past the first tenth of the walk, RSS should no longer grow with the audience.
        "rss_at_10pct_mb": samples[len(samples) // 10] / mb,
        "rss_end_mb": samples[-1] / mb,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--account", required=True)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.account, args.tag))))
