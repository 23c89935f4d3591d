"""`make bench`: every figure measured in one run on this machine, printed as a table and
written to bench/results.json, rewritten whole by each run with the commit, the core
count and the date; ``MISSED name=value (target …)`` for each target missed (``TARGETS``,
the one list of them) and exit code 1 if any was.

Rates on this kind of machine vary by a third from run to run, so every figure that is
compared with another is measured in the same run, against the strongest baseline
written for it: the end-to-end push paths against the providers' libraries driven alone
at their fastest in-flight setting (found by trying several), in alternating pairs; the
campaign path against the naive one; the API against a bare ASGI endpoint on the same
server; an OTP during a campaign against one when idle. Tail latencies are taken over
every request of the measured period.

    .venv/bin/python scripts/bench.py                 # default size, about 5 minutes
    BENCH_SCALE=full .venv/bin/python scripts/bench.py   # fan-out over 1,000,000 contacts
    BENCH_SCALE=tiny .venv/bin/python scripts/bench.py   # seconds: checks the code runs
    BENCH_STEPS=fanout BENCH_SCALE=full …                # only some steps (comma-separated);
                                                         # writes bench/results-fanout.json

Steps: push_paths (raw loops, end-to-end FCM and APNs campaigns), naive (needs
push_paths' FCM figure for its speedup), whatsapp_cap, otp, api_paths, fanout,
automations, crash, webhooks (an FCM campaign with event webhooks off and on, and the
events a local receiver got). Targets are judged at the default and full scales (the 1M
fan-out at full only); a tiny run judges nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import redis as sync_redis
from benchkit import loadgen
from benchkit.crash import LeaseWatch, kill_busy_batch
from benchkit.naive_tasks import COUNTER
from benchkit.stack import (
    BULK_NICE,
    RECEIVER_HOST,
    BenchStack,
    IdleShare,
    bench_stack,
    seed_contacts,
    wait_worker,
)
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table
from standardwebhooks.webhooks import Webhook

from worker.runtime.celery_app import app as celery
from worker.stack import demo
from worker.stack.processes import free_port
from worker.store import channels, keys, webhook_deliveries

console = Console() if sys.stdout.isatty() else Console(width=160)
SCRIPTS = Path(__file__).resolve().parent
# The raw loops run as niced as the bulk worker they are compared with.
RAW_LOOP = [sys.executable, str(SCRIPTS / "benchkit" / "raw.py"), "--nice", str(BULK_NICE)]
RAW_PROCESSES = 2  # as many as the bulk worker has (one per core)
# The raw loops' settings tried before the rounds, the fastest kept. FCM: send_each_async
# calls in flight per process and messages per call (the worker keeps 3 slices in flight,
# each sent in calls of DISPATCH_FCM_BATCH_SIZE, 50);
# APNs: requests in flight per process (the worker keeps 3 slices of 100 lanes); beyond
# ~500 on its one connection aioapns runs out of HTTP/2 flow-control window (65,535
# bytes) and sleeps a second per refused stream (800 gave half the rate, then failed).
RAW_CANDIDATES: dict[str, list[dict[str, int]]] = {
    "fcm": [
        {"calls": 2, "batch": 25},
        {"calls": 2, "batch": 50},
        {"calls": 2, "batch": 100},
        {"calls": 2, "batch": 200},
        {"calls": 4, "batch": 50},
    ],
    "apns": [{"in_flight": k} for k in (100, 200, 300, 400)],
    # Our FCM transport sends a call's messages at once (the worker: three slices of 125
    # in flight per job). 2 x 50 and 2 x 100 came last in every run since the simulator's fix
    # (c1adcaa), 10-20 % behind; one 2.5 s trial is noisier than that, and 2 x 50 once won
    # the tuning and made a baseline the campaigns beat (pairs up to 1.14).
    "fcm-lean": [
        {"calls": 2, "batch": 200},
        {"calls": 4, "batch": 100},
        {"calls": 2, "batch": 400},
    ],
}
ROUNDS = 2  # API rounds, and the fcm_lean step's raw rounds of each library
API_WINDOWS = 4  # latency windows per endpoint (see api_paths)
PUSH_WARM_UP = 400  # devices of the unmeasured first campaign per platform (a few slices)


# The audience step's contacts live in these zones, in turn (one in six each).
_BENCH_ZONES = (
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "America/Sao_Paulo",
)


def _quiet_elsewhere(now: float, hold_s: float = 3600) -> dict[str, str]:
    """A one-minute quiet window (UTC the account's zone) that holds in none of
    ``_BENCH_ZONES`` for ``hold_s`` from ``now``: every contact's time is checked, nobody
    is put off."""

    def local_minutes(at: float) -> list[int]:
        out = []
        for zone in _BENCH_ZONES:
            local = datetime.fromtimestamp(at, ZoneInfo(zone))
            out.append(local.hour * 60 + local.minute)
        return out

    busy: set[int] = set()
    for step in range(0, int(hold_s) + 120, 60):
        busy.update(local_minutes(now + step))
    for start in range(0, 24 * 60):
        if not {start, (start + 1) % 1440} & busy:
            begin = datetime(2000, 1, 1) + timedelta(minutes=start)
            end = begin + timedelta(minutes=1)
            return {"start": begin.strftime("%H:%M"), "end": end.strftime("%H:%M")}
    raise RuntimeError("no quiet window free of every bench zone")


@dataclass(frozen=True)
class Scale:
    push: int  # devices per end-to-end push campaign (and per raw loop round)
    tune_s: float  # seconds of raw sending for each in-flight setting tried
    naive: int  # device tokens sent the naive way
    wa_cap: int  # the WhatsApp number's cap, messages/s
    wa_contacts: int
    otp_sends: int
    api_s: float  # seconds per API measurement
    fanout: int  # contacts walked by the fan-out measurement
    automations: int = 100_000  # contacts enrolled into "wait, then tag"
    automation_wait_s: float = 10.0
    crash: int = 8_000  # devices of the campaign whose pool process is killed
    # off/on pairs of the webhook step's campaign (of `push`): odd, so the median is a pair's
    webhook_pairs: int = 3
    # one more campaign with the events keeping pace (the webhooks worker restarted twice)
    webhook_keep_pace: bool = True
    # without/with audience checks pairs of the audience step's campaign (of `push`)
    audience_pairs: int = 3
    # how long no more events must come before the webhook step counts them (a repeat
    # would come within it)
    events_settle_s: float = 1.0
    # API rounds, and the fcm_lean step's raw rounds of each library
    rounds: int = ROUNDS
    # raw/campaign pairs of the push steps (push_paths, fcm_lean), in alternating order: a
    # pair's ratio varies by ±15 % on this machine (its CPU time for the same work does,
    # idle), so their median takes five
    pairs: int = 5
    # unmeasured sends of each raw loop process before each of its measurements
    raw_warm: int = 400
    # The stack's settings besides the bench's own (by name).
    settings: dict[str, str] = field(default_factory=dict)


SCALES = {
    # Seconds, not a measurement: the code of every step runs (tests/test_bench_smoke.py).
    "tiny": Scale(
        push=400,
        tune_s=0.25,
        naive=200,
        wa_cap=40,
        wa_contacts=80,
        otp_sends=20,
        api_s=0.6,
        fanout=2000,
        automations=600,
        automation_wait_s=2.0,
        crash=400,
        webhook_pairs=1,
        webhook_keep_pace=False,
        audience_pairs=1,
        events_settle_s=0.3,
        rounds=1,
        pairs=2,  # both orders of a pair
        raw_warm=50,
        # A dead process's leases run out sooner, webhook endpoints are seen sooner: the
        # crash and webhooks steps' waits, not their code.
        settings={"lease_ttl_s": "2", "webhook_subscribers_refresh_s": "0.2"},
    ),
    "default": Scale(
        push=20_000,
        tune_s=2.5,
        naive=4_000,
        wa_cap=100,
        wa_contacts=2_000,
        otp_sends=300,
        api_s=8,
        fanout=100_000,
    ),
    "full": Scale(
        push=50_000,
        tune_s=4,
        naive=10_000,
        wa_cap=200,
        wa_contacts=8_000,
        otp_sends=1000,
        api_s=15,
        fanout=1_000_000,
        crash=20_000,
    ),
}


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_json(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _med(values: list[float], digits: int = 0) -> float:
    return round(statistics.median(values), digits or None)


Figures = dict[str, Any]


def _alternating(
    count: int, raw: Callable[[], Figures], campaign: Callable[[], Figures]
) -> list[tuple[Figures, Figures]]:
    """``count`` raw/campaign pairs, the raw loop first in one and the campaign first in
    the next: a drift of the machine's speed favours neither."""
    pairs = []
    for i in range(count):
        if i % 2 == 0:
            a = raw()
            b = campaign()
        else:
            b = campaign()
            a = raw()
        pairs.append((a, b))
    return pairs


def _label(setting: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in setting.items())


class RawLoops:
    """``RAW_PROCESSES`` raw loops of one platform (`benchkit/raw.py`), kept running
    through a platform's measurements and told what to do over their standard input, so
    that every process starts each measurement at the same moment."""

    def __init__(self, stack: BenchStack, platform: str, warm: int) -> None:
        self.platform, self.warm = platform, warm
        self._sim = stack.procs["sim"]
        self.logs = [stack.workdir / "logs" / f"raw-{platform}-{i}.log" for i in range(2)]
        self.children = [
            subprocess.Popen(
                [*RAW_LOOP, "--platform", platform],
                env=stack.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log.open("wb"),
                text=True,
                start_new_session=True,  # its own session, niced as the bulk worker's
            )
            for log in self.logs[:RAW_PROCESSES]
        ]
        for i in range(len(self.children)):
            self._expect(i, "ready")

    def __enter__(self) -> RawLoops:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            with suppress(OSError):
                child.stdin.close()  # type: ignore[union-attr]
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()

    def _line(self, i: int) -> str:
        line = self.children[i].stdout.readline()  # type: ignore[union-attr]
        if not line:
            tail = self.logs[i].read_text(errors="replace")[-3000:]
            raise RuntimeError(f"raw {self.platform} loop {i} stopped:\n{tail}")
        return line.strip()

    def _expect(self, i: int, what: str) -> None:
        line = self._line(i)
        if line != what:
            raise RuntimeError(f"raw {self.platform} loop {i}: expected {what!r}, got {line!r}")

    def _tell(self, i: int, command: dict[str, Any]) -> None:
        self.children[i].stdin.write(json.dumps(command) + "\n")  # type: ignore[union-attr]
        self.children[i].stdin.flush()  # type: ignore[union-attr]

    def run(self, setting: dict[str, int], seconds: float) -> dict[str, float]:
        """Every process sends for ``seconds``, all started at once; the rate is the sum
        of the processes' rates; the simulator's CPU per request it received."""
        sim0, idle = self._sim.cpu_s(), IdleShare()
        for i in range(len(self.children)):
            offset = i * 10_000_000
            run = {**setting, "seconds": seconds, "offset": offset, "warm": self.warm}
            self._tell(i, {"run": run})
        outs = [json.loads(self._line(i)) for i in range(len(self.children))]
        total = sum(o["sends"] for o in outs)
        # what the simulator received, the warm-up sends included
        requests = total + sum(o["warm"] for o in outs)
        return {
            "sends_per_s": sum(o["sends_per_s"] for o in outs),
            "cpu_us_per_send": sum(o["cpu_s"] for o in outs) / total * 1e6,
            "sends": total,
            "requests": requests,
            "sim_cpu_us_per_send": (self._sim.cpu_s() - sim0) / requests * 1e6,
            "idle_share": idle.share(),
        }

    def fastest(
        self, candidates: list[dict[str, int]], seconds: float
    ) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
        """Each setting run once for ``seconds``: every run by label, and the fastest."""
        tried = {_label(c): self.run(c, seconds) for c in candidates}
        return tried, max(candidates, key=lambda c: tried[_label(c)]["sends_per_s"])

    def loop_start(self, setting: dict[str, int]) -> None:
        """The first process sends until ``loop_stop``."""
        self._tell(0, {"loop": {**setting, "offset": 50_000_000, "warm": self.warm}})
        self._expect(0, json.dumps({"looping": True}))

    def loop_stop(self) -> dict[str, float]:
        self._tell(0, {"stop": True})
        out: dict[str, float] = json.loads(self._line(0))
        return out


class Bench:
    def __init__(self, stack: BenchStack, scale: Scale) -> None:
        self.stack = stack
        self.scale = scale
        self.http = httpx.Client(timeout=60)
        self.results: dict[str, Any] = {}
        self.notes: dict[str, str] = {}
        self._bulk_env: dict[str, str] = {}  # what the bulk worker runs with over the stack's

    # --- helpers -------------------------------------------------------------------

    def api(self, method: str, path: str, key: str | None = None, **kw: Any) -> dict[str, Any]:
        response = self.http.request(
            method,
            f"{self.stack.api_url}{path}",
            headers={"Authorization": f"Bearer {key or self.stack.key}"},
            **kw,
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def seed(self, tag: str, count: int, **kinds: bool) -> None:
        self.stack.run(lambda r: seed_contacts(r, demo.ACCOUNT, tag, count, **kinds))

    def campaign(
        self,
        channel: str,
        content: dict[str, Any],
        tag: str,
        during: Callable[[], Any] | None = None,
        each_poll: Callable[[], None] | None = None,
        category: str | None = None,
    ) -> dict[str, Any]:
        """Create and send a campaign to a tag (of ``category``: the API's default,
        marketing, unless given); wait until it completes (``each_poll`` called at each
        look, every 0.2 s). Returns the campaign, its server-side duration, and the CPU
        the bulk worker and Valkey spent."""
        body: dict[str, Any] = {"name": f"bench {tag}", "channel": channel, "content": content}
        body["audience"] = {"segment": {"tag": tag}}
        if category is not None:
            body["category"] = category
        cid = self.api("POST", "/api/v1/campaigns", json=body)["campaign"]["id"]
        bulk = self.stack.procs["bulk"]
        sim = self.stack.procs["sim"]
        cpu0, valkey0, sim0 = bulk.cpu_s(), self.stack.valkey_info(), sim.cpu_s()
        idle = IdleShare()
        self.api("POST", f"/api/v1/campaigns/{cid}/send")
        extra = during() if during else None
        while True:
            campaign = self.api("GET", f"/api/v1/campaigns/{cid}")["campaign"]
            if campaign["status"] == "completed":
                break
            if campaign["status"] not in ("sending", "scheduled"):
                raise RuntimeError(f"campaign ended {campaign['status']}: {campaign}")
            if each_poll:
                each_poll()
            time.sleep(0.2)
        cpu1, valkey1, sim1 = bulk.cpu_s(), self.stack.valkey_info(), sim.cpu_s()
        stats = campaign["stats"]
        seconds = _ts(campaign["finished_at"]) - _ts(campaign["started_at"])
        sends = stats["sent"] + stats["failed"]
        return {
            "campaign": campaign,
            "seconds": seconds,
            "sends": sends,
            "sends_per_s": sends / seconds,
            "worker_cpu_us_per_send": (cpu1 - cpu0) / sends * 1e6,
            "valkey_cpu_us_per_send": (valkey1["cpu_s"] - valkey0["cpu_s"]) / sends * 1e6,
            "valkey_commands_per_send": (valkey1["commands"] - valkey0["commands"]) / sends,
            "sim_cpu_us_per_send": (sim1 - sim0) / sends * 1e6,
            "idle_share": idle.share(),
            "during": extra,
        }

    # --- measurements --------------------------------------------------------------

    def push_paths(self) -> None:
        """Per platform, against the strongest raw loop found here:

        1. the raw loop's in-flight setting: each candidate tried once, the fastest kept
           (every candidate's rate is written);
        2. ``Scale.pairs`` pairs, raw loop then campaign, then campaign then raw loop (A/B,
           B/A, …) over the same devices: the efficiency is the median of the pairs'
           ratios, every pair is written;
        3. a campaign with one raw process sending alongside it from its start to its
           end, for the overhead: the difference of two CPU costs of ~0.3–1.1 ms per
           send, which this machine's drift (a third within a minute) swamps when they
           are taken one after the other (``*_overhead_sequential_*``, shown only)."""
        n = self.scale.push
        content = {"title": "Bench {{name}}", "message": "End to end"}
        for platform in ("fcm", "apns"):
            self.seed(f"e2e-{platform}", n, **{platform: True})
            self.seed(f"pair-{platform}", n // 2, **{platform: True})
            # Not measured, as the raw loop's first sends are not: the worker's first
            # campaign opens its connections and signs its first token.
            self.seed(f"warm-{platform}", PUSH_WARM_UP, **{platform: True})
            # The library the workers send with, used as well as it can be: for FCM, the
            # default sender's (our transport unless DISPATCH_FCM_SENDER says otherwise).
            loop = platform
            if platform == "fcm" and self.stack.settings.fcm_sender == "lean":
                loop = "fcm-lean"
            with RawLoops(self.stack, loop, self.scale.raw_warm) as raw:
                self.campaign("push", content, f"warm-{platform}")
                tried, best = raw.fastest(RAW_CANDIDATES[loop], self.scale.tune_s)
                # Each raw round lasts about as long as a campaign to n devices.
                round_s = n / tried[_label(best)]["sends_per_s"]

                pairs = _alternating(
                    self.scale.pairs,
                    partial(raw.run, best, round_s),
                    partial(self._whole_campaign, content, f"e2e-{platform}", n),
                )
                pair, alongside = self.alongside(raw, best, content, f"pair-{platform}")

            raws, e2es = [a for a, _ in pairs], [b for _, b in pairs]
            figures: dict[str, Any] = {
                f"raw_{platform}_tried_sends_per_s": {
                    k: round(v["sends_per_s"]) for k, v in tried.items()
                },
                f"raw_{platform}_loop": loop,
                f"raw_{platform}_setting": _label(best),
                f"raw_{platform}_sends_per_s": _med([a["sends_per_s"] for a in raws]),
                f"raw_{platform}_cpu_us_per_send": _med([a["cpu_us_per_send"] for a in raws]),
                f"{platform}_sends_per_s": _med([b["sends_per_s"] for b in e2es]),
                f"{platform}_efficiency": _med(
                    [b["sends_per_s"] / a["sends_per_s"] for a, b in pairs], 2
                ),
                f"{platform}_pairs": [
                    {
                        "raw_sends_per_s": round(a["sends_per_s"]),
                        "e2e_sends_per_s": round(b["sends_per_s"]),
                        "efficiency": round(b["sends_per_s"] / a["sends_per_s"], 3),
                        "raw_cpu_us_per_send": round(a["cpu_us_per_send"]),
                        "worker_cpu_us_per_send": round(b["worker_cpu_us_per_send"]),
                        "raw_sim_cpu_us_per_send": round(a["sim_cpu_us_per_send"]),
                        "e2e_sim_cpu_us_per_send": round(b["sim_cpu_us_per_send"]),
                    }
                    for a, b in pairs
                ],
                f"{platform}_worker_cpu_us_per_send": _med(
                    [b["worker_cpu_us_per_send"] for b in e2es]
                ),
                f"{platform}_valkey_cpu_us_per_send": _med(
                    [b["valkey_cpu_us_per_send"] for b in e2es], 1
                ),
                f"{platform}_valkey_commands_per_send": _med(
                    [b["valkey_commands_per_send"] for b in e2es], 2
                ),
                f"{platform}_overhead_sequential_cpu_us_per_send": _med(
                    [b["worker_cpu_us_per_send"] - a["cpu_us_per_send"] for a, b in pairs]
                ),
                f"{platform}_paired_worker_cpu_us_per_send": round(pair["worker_cpu_us_per_send"]),
                f"{platform}_paired_raw_cpu_us_per_send": round(alongside["cpu_us_per_send"]),
                f"{platform}_overhead_cpu_us_per_send": round(
                    pair["worker_cpu_us_per_send"] - alongside["cpu_us_per_send"]
                ),
            }
            self.results.update(figures)
        self.results["overhead_cpu_us_per_send"] = max(
            self.results["fcm_overhead_cpu_us_per_send"],
            self.results["apns_overhead_cpu_us_per_send"],
        )
        self.results["valkey_cpu_us_per_send"] = max(
            self.results["fcm_valkey_cpu_us_per_send"], self.results["apns_valkey_cpu_us_per_send"]
        )

    def _whole_campaign(self, content: dict[str, Any], tag: str, n: int) -> Figures:
        """A push campaign to ``tag``, which must have sent to all ``n`` devices (a failed
        device, a request the simulator refused, ends the bench)."""
        campaign = self.campaign("push", content, tag)
        if campaign["sends"] != n or campaign["campaign"]["stats"]["failed"]:
            raise RuntimeError(f"{tag} campaign: {campaign['campaign']['stats']}")
        return campaign

    def alongside(
        self, raw: RawLoops, setting: dict[str, int], content: dict[str, Any], tag: str
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """A campaign to ``tag`` with one raw process sending from the moment it starts
        until it completes; returns both's figures."""
        raw.loop_start(setting)
        try:
            campaign = self.campaign("push", content, tag)
        finally:
            alongside = raw.loop_stop()
        if campaign["campaign"]["stats"]["failed"]:
            raise RuntimeError(f"alongside: {campaign['campaign']['stats']}")
        return campaign, alongside

    def naive(self) -> None:
        """One Celery task per FCM token, published one by one as a fan-out loop would."""
        n = self.scale.naive
        argv = ["nice", "-n", str(BULK_NICE), sys.executable, "-m", "celery"]
        argv += ["-A", "worker.runtime.celery_app:app"]
        argv += ["worker", "-Q", "naive", "-c", "2", "-I", "benchkit.naive_tasks", "-n", "naive@%h"]
        argv += ["--without-mingle", "--without-gossip", "-l", "WARNING"]
        wait_worker(self.stack.spawn("naive", argv))
        tokens = [f"naive{i:07d}:APA91b-bench-naive-token" for i in range(n)]
        self.stack.run(lambda r: r.delete(COUNTER))
        started = time.perf_counter()
        for token in tokens:
            celery.send_task("bench.naive_push", args=[demo.ACCOUNT, "fcm", token], queue="naive")

        async def done(redis: Redis) -> int:
            counts = await redis.hgetall(COUNTER)
            return sum(int(v) for v in counts.values())

        while self.stack.run(done) < n:
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        self.stack.stop("naive")
        self.results["naive_sends_per_s"] = round(n / seconds)
        if "fcm_sends_per_s" in self.results:
            self.results["speedup_vs_naive"] = round(
                self.results["fcm_sends_per_s"] / (n / seconds), 1
            )

    def whatsapp_cap(self) -> None:
        cap = self.scale.wa_cap

        async def set_cap(redis: Redis) -> None:
            config = await channels.load_whatsapp(redis, demo.ACCOUNT)
            assert config is not None
            await channels.save_whatsapp(
                redis, demo.ACCOUNT, config.model_copy(update={"rate_per_s": cap})
            )

        self.stack.run(set_cap)
        # The number's cap at Meta is raised alike (an upgraded number: 80/s by default).
        number = f"{self.stack.sim_url}/_sim/whatsapp/numbers/{demo.PHONE_NUMBER_ID}"
        spec = self.http.get(number).json()
        self.http.put(number, json={**spec, "throughput_per_s": cap}).raise_for_status()
        self.seed("wa-cap", self.scale.wa_contacts, phone=True)
        before = self._sim_whatsapp_at()
        result = self.campaign(
            "whatsapp", {"template_name": "shipping_update", "parameters": ["{{name}}"]}, "wa-cap"
        )
        stamps = sorted(set(self._sim_whatsapp_at()) - set(before))
        # The steady rate: the first and last second are ramps.
        steady = [t for t in stamps if stamps[0] + 1 <= t <= stamps[-1] - 1]
        rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
        busiest, lo = 0, 0
        for hi, t in enumerate(stamps):
            while t - stamps[lo] >= 1.0:
                lo += 1
            busiest = max(busiest, hi - lo + 1)
        self.results["whatsapp_campaign_cap_per_s"] = cap
        self.results["whatsapp_campaign_rate_per_s"] = round(rate, 1)
        self.results["whatsapp_campaign_rate_pct_of_cap"] = round(100 * rate / cap, 1)
        self.results["whatsapp_campaign_busiest_second"] = busiest
        self.results["whatsapp_campaign_sends"] = result["sends"]

    def _sim_whatsapp_at(self) -> list[float]:
        body = self.http.get(
            f"{self.stack.sim_url}/_sim/requests", params={"channel": "whatsapp"}
        ).json()
        return [
            r["at"]
            for r in body["requests"]
            if r.get("phone_number_id") == demo.PHONE_NUMBER_ID and r.get("status") == 200
        ]

    def _otp(self, count: int, first: int) -> list[float]:
        """``count`` sequential OTPs, each to its own recipient (numbers ``first`` on): Meta
        paces one recipient at ~1 message per 6 s, so figures sent to one number could
        not be reproduced against it."""
        body = {
            "template_name": "order_confirmation",
            "parameters": [{"type": "text", "text": "OTP-1234"}, {"type": "text", "text": "0"}],
        }
        latencies = []
        with httpx.Client(timeout=30) as client:
            for i in range(first, first + count):
                started = time.perf_counter()
                response = client.post(
                    f"{self.stack.api_url}/api/v1/channels/whatsapp/send",
                    json={**body, "to": f"+9198765{i:05d}"},
                    headers={"Authorization": f"Bearer {self.stack.otp_key}"},
                )
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"OTP send: {response.status_code} {response.text}")
        return latencies

    def otp(self) -> None:
        n = self.scale.otp_sends
        idle = self._otp(n, 0)
        during = self.campaign(
            "push",
            {"title": "Bench {{name}}", "message": "During OTPs"},
            "e2e-fcm",
            during=lambda: self._otp(n, n),
        )
        busy: list[float] = during["during"]
        self.results["otp_p50_ms_idle"] = round(statistics.median(idle), 1)
        self.results["otp_p99_ms_idle"] = round(_pct(idle, 0.99), 1)
        self.results["otp_p50_ms_during_campaign"] = round(statistics.median(busy), 1)
        self.results["otp_p99_ms_during_campaign"] = round(_pct(busy, 0.99), 1)
        self.results["otp_p99_ratio"] = round(
            self.results["otp_p99_ms_during_campaign"] / self.results["otp_p99_ms_idle"], 2
        )
        self.results["otp_campaign_sends_per_s"] = round(during["sends_per_s"])

    def api_paths(self) -> None:
        """The API's send route against two bare endpoints served as it is (one uvicorn
        process each, `benchkit/api_bare.py`): a raw ASGI app doing one LPUSH (this
        stack's floor: ``api_efficiency`` is against it) and the same in FastAPI (shown).
        Throughput: closed loops of 32 connections, the three endpoints in turn, ``Scale.rounds``
        times; the efficiency is the median of the rounds' ratios. Latency: an open loop
        at half the raw endpoint's rate, windows of the raw endpoint (what the machine
        itself adds) alternating with the API's; ``api_p99_ms`` is the p99 of every
        request of every window, pooled. An API slower than half the floor is saturated
        at that rate: ``api_p99_ms_at_own_half`` (shown) is its p99 at half its own rate.

        The transactional worker stops consuming meanwhile, so that its CPU does not count
        against the API's (the queued jobs are dropped afterwards)."""
        node = f"transactional@{socket.gethostname()}"
        celery.control.cancel_consumer("transactional", destination=[node], reply=True)
        ports = {}
        for name, target in (("raw", "raw_app"), ("fastapi", "app")):
            ports[name] = free_port()
            argv = [sys.executable, "-m", "uvicorn", f"benchkit.api_bare:{target}"]
            argv += ["--port", str(ports[name]), "--no-access-log", "--log-level", "warning"]
            self.stack.spawn(f"api-bare-{name}", argv)
        body = json.dumps(
            {
                "to": demo.CONTACT_PHONE,
                "template_name": "order_confirmation",
                "parameters": [{"type": "text", "text": "A-1"}, {"type": "text", "text": "1"}],
            }
        ).encode()
        bare_req = loadgen.request_bytes("/bare", body, {"Content-Type": "application/json"})
        real_req = loadgen.request_bytes(
            "/api/v1/channels/whatsapp/send",
            body,
            {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.stack.otp_key}",
                "Prefer": "respond-async",
            },
        )
        ports["api"] = self.stack.settings.api_port
        requests = {"raw": bare_req, "fastapi": bare_req, "api": real_req}
        for name in ("raw", "fastapi"):
            asyncio.run(loadgen.wait_ready(ports[name], bare_req, 30))
        seconds = self.scale.api_s / self.scale.rounds
        rates: dict[str, list[float]] = {name: [] for name in requests}
        warm_s = min(1.0, self.scale.api_s / 2)  # a second, less at the tiny scale
        for name in requests:  # warm-up
            asyncio.run(loadgen.closed_loop(ports[name], requests[name], 8, warm_s))
        for _ in range(self.scale.rounds):
            for name, raw in requests.items():
                done, statuses = asyncio.run(loadgen.closed_loop(ports[name], raw, 32, seconds))
                if set(statuses) != {202}:
                    raise RuntimeError(f"{name} answered {statuses}")
                rates[name].append(done / seconds)
        offered = statistics.median(rates["raw"]) / 2
        own_half = statistics.median(rates["api"]) / 2
        window_s = self.scale.api_s / API_WINDOWS
        bare_windows: list[list[float]] = []
        windows: list[list[float]] = []
        own_windows: list[list[float]] = []
        for _ in range(API_WINDOWS):
            bare_windows.append(
                asyncio.run(loadgen.open_loop(ports["raw"], bare_req, offered, window_s))[0]
            )
            for rate, into in ((offered, windows), (own_half, own_windows)):
                latencies, statuses = asyncio.run(
                    loadgen.open_loop(ports["api"], real_req, rate, window_s)
                )
                if set(statuses) != {202}:
                    raise RuntimeError(f"the API answered {statuses} at {rate:.0f}/s")
                into.append(latencies)
        self.stack.stop("api-bare-raw")
        self.stack.stop("api-bare-fastapi")
        pooled = [v for w in windows for v in w]
        bare_pooled = [v for w in bare_windows for v in w]
        own_pooled = [v for w in own_windows for v in w]

        async def drop(redis: Redis) -> None:
            await redis.delete("transactional", keys.unstarted(), "bench:bare")

        self.stack.run(drop)
        celery.control.add_consumer("transactional", destination=[node], reply=True)
        ratios = [api / raw for api, raw in zip(rates["api"], rates["raw"], strict=True)]
        window_p99s = [round(_pct(w, 0.99), 1) for w in windows]
        self.results.update(
            {
                "api_bare_per_s": round(statistics.median(rates["raw"])),
                "api_bare_fastapi_per_s": round(statistics.median(rates["fastapi"])),
                "api_enqueue_per_s": round(statistics.median(rates["api"])),
                "api_efficiency": round(statistics.median(ratios), 2),
                "api_efficiency_rounds": [round(r, 3) for r in ratios],
                "api_efficiency_vs_fastapi": round(
                    statistics.median(rates["api"]) / statistics.median(rates["fastapi"]), 2
                ),
                "api_offered_per_s": round(offered),
                "api_p50_ms": round(statistics.median(pooled), 1),
                "api_p99_ms": round(_pct(pooled, 0.99), 1),
                "api_p99_windows_ms": window_p99s,
                "api_p99_median_window_ms": statistics.median(window_p99s),
                "api_bare_p99_ms": round(_pct(bare_pooled, 0.99), 1),
                # At half the API's own rate (information: its latency when not saturated).
                "api_own_half_per_s": round(own_half),
                "api_p99_ms_at_own_half": round(_pct(own_pooled, 0.99), 1),
                "api_bare_p99_windows_ms": [round(_pct(w, 0.99), 1) for w in bare_windows],
            }
        )

    def automations(self) -> None:
        """Enrol contacts into "wait, then tag" all at once; the bulk worker's memory is
        sampled while the runs wait and then run their second step."""
        n = self.scale.automations
        self.seed("auto", n)
        bulk = self.stack.procs["bulk"]
        script = [
            sys.executable,
            str(SCRIPTS / "benchkit" / "automations.py"),
            "--count",
            str(n),
            "--wait",
            str(self.scale.automation_wait_s),
        ]
        child = subprocess.Popen(
            script, env=self.stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        samples: list[float] = []
        while child.poll() is None:
            samples.append(bulk.rss_mb())
            time.sleep(0.5)
        stdout, stderr = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"automation bench failed:\n{stderr[-3000:]}")
        out = json.loads(stdout.strip().splitlines()[-1])
        if out["completed"] != n:
            raise RuntimeError(f"automation bench: {out}")
        tenth = samples[max(1, len(samples) // 10)] if samples else 0.0
        self.results["automation_runs"] = out["runs"]
        self.results["automation_wait_s"] = self.scale.automation_wait_s
        self.results["automation_enroll_s"] = round(out["enroll_s"], 1)
        self.results["automation_total_s"] = round(out["total_s"], 1)
        self.results["automation_late_p50_s"] = round(out["late_p50_s"], 2)
        self.results["automation_late_p99_s"] = round(out["late_p99_s"], 2)
        self.results["automation_worker_rss_peak_mb"] = round(max(samples, default=0.0), 1)
        self.results["automation_worker_rss_growth_after_10pct_mb"] = round(
            max(samples, default=0.0) - tenth, 1
        )

    def crash(self) -> None:
        """A push campaign whose bulk pool process is SIGKILLed a quarter of the way:
        ``crash_resume_s``, from the kill until every lease the dead process held is held
        by another job (its work is being done again); ``crash_duplicate_pct``, the share
        of devices that got the push twice (what the dead process had in flight)."""
        n, tag = self.scale.crash, "crash"
        self.seed(tag, n, fcm=True)
        sim = self.stack.sim_url
        self.http.delete(f"{sim}/_sim/requests").raise_for_status()
        # A provider answering in 0.5 s: each batch job lasts a second or more, so the kill
        # lands inside one (at full speed a batch takes ~0.15 s), at any scale.
        fault = {"channel": "fcm", "kind": "delay", "delay_s": 0.5, "count": None}
        self.http.post(f"{sim}/_sim/faults", json=fault).raise_for_status()
        client = sync_redis.Redis.from_url(
            self.stack.settings.effective_redis_url, decode_responses=True
        )
        watch = LeaseWatch(client, demo.ACCOUNT, self.stack.settings.lease_ttl_s)

        def kill_a_quarter_in() -> dict[str, Any]:
            while self._sim_count("fcm") < n // 4:
                time.sleep(0.02)
            killed_at, held = kill_busy_batch(celery, client, f"bulk@{socket.gethostname()}")
            dead = watch.unrenewed(held)
            if not dead:
                raise RuntimeError("crash: the killed pool process held no lease")
            return {"leases": len(dead), "resume_s": watch.taken_over(dead, killed_at, 120)}

        try:
            result = self.campaign(
                "push", {"title": "Crash", "message": "Sale"}, tag, during=kill_a_quarter_in
            )
        finally:
            client.close()
            self.http.delete(f"{sim}/_sim/faults").raise_for_status()
        got = self.http.get(
            f"{self.stack.sim_url}/_sim/requests", params={"channel": "fcm"}, timeout=120
        ).json()["requests"]
        delivered = {r["token"] for r in got if r.get("status") == 200}
        stats = result["campaign"]["stats"]
        if stats["sent"] != n or len(delivered) != n:
            raise RuntimeError(f"crash: {stats}, {len(delivered)} devices reached of {n}")
        # Every request that reached the provider counts, answered or not: one cut short
        # by the kill may still have been delivered (an upper bound of what was shown twice).
        received = Counter(r["token"] for r in got)
        twice = sum(count - 1 for count in received.values())
        self.results["crash_devices"] = n
        self.results["crash_leases_taken_over"] = result["during"]["leases"]
        self.results["crash_resume_s"] = round(result["during"]["resume_s"], 2)
        self.results["crash_duplicates"] = twice
        self.results["crash_duplicate_pct"] = round(100 * twice / n, 2)
        self.results["crash_campaign_s"] = round(result["seconds"], 2)

    def _sim_count(self, channel: str) -> int:
        stats = self.http.get(f"{self.stack.sim_url}/_sim/stats").json()
        return int(stats["requests"].get(channel, 0))

    def fanout(self) -> None:
        self.seed("fanout", self.scale.fanout, fcm=True)
        out = run_json(
            [
                sys.executable,
                str(SCRIPTS / "benchkit" / "fanout.py"),
                "--account",
                demo.ACCOUNT,
                "--tag",
                "fanout",
            ],
            self.stack.env,
        )
        if out["contacts"] != self.scale.fanout:
            raise RuntimeError(f"fan-out walked {out['contacts']} of {self.scale.fanout}")
        self.results["fanout_contacts"] = out["contacts"]
        self.results["fanout_s"] = round(out["fanout_s"], 2)
        self.results["fanout_contacts_per_s"] = round(out["contacts"] / out["fanout_s"])
        self.results["fanout_peak_rss_mb"] = round(out["rss_peak_mb"], 1)
        self.results["fanout_rss_growth_after_10pct_mb"] = round(
            out["rss_end_mb"] - out["rss_at_10pct_mb"], 1
        )

    # --- event webhooks --------------------------------------------------------------

    def webhooks(self) -> None:
        """The FCM campaign of ``push`` devices with event webhooks off (no endpoint) and on
        (one endpoint subscribed to ``push.delivered``, on a local receiver:
        `benchkit/receiver.py`), ``webhook_pairs`` pairs (off/on, then on/off) after an
        unmeasured warm-up campaign with the endpoint. Per pair: both campaigns' send
        rates (as ``push_paths`` measures a campaign) and their ratio, the
        ``webhook_campaign_rate_ratio`` being the median; per run with webhooks on: events
        received per second from the first to the last, how long after the campaign's end
        the last came, distinct event ids and repeats (one event per device is the
        contract), a sample of signatures verified with ``standardwebhooks``; and every
        process's CPU over the campaign and over the tail (the campaign's end to the last
        event), to show where the events' cost goes."""
        n, tag, warm = self.scale.push, "webhooks-fcm", "webhooks-warm"
        self.seed(tag, n, fcm=True)
        self.seed(warm, PUSH_WARM_UP, fcm=True)
        content = {"title": "Bench {{name}}", "message": "With events"}
        port_file = self.stack.workdir / "receiver.port"
        argv = [sys.executable, str(SCRIPTS / "benchkit" / "receiver.py")]
        argv += ["--host", RECEIVER_HOST, "--port-file", str(port_file)]
        self.stack.spawn("receiver", argv)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.05)
        receiver = f"http://{RECEIVER_HOST}:{port_file.read_text()}"
        url = f"{receiver}/events"
        try:
            hook = self._webhook_endpoint(url)
            self.campaign("push", content, warm)
            self._webhook_events(receiver, hook, PUSH_WARM_UP, None)
            self._webhook_endpoint_gone(hook)
            pairs = []
            for i in range(self.scale.webhook_pairs):
                # off then on, then on then off: a drift of the machine's speed over the
                # step weighs on both sides alike
                order = ("off", "on") if i % 2 == 0 else ("on", "off")
                runs = {
                    mode: self._webhook_run(mode, content, tag, receiver, url) for mode in order
                }
                pairs.append((runs["off"], runs["on"]))
            # The same campaign with the senders keeping pace with the sends (no yielding):
            # what events cost a campaign when they are delivered as it runs.
            keep_pace = None
            if self.scale.webhook_keep_pace:
                self._webhooks_worker({"DISPATCH_WEBHOOK_BUSY_CPU_SHARE": "1"})
                try:
                    keep_pace = self._webhook_run("on", content, tag, receiver, url)
                finally:
                    self._webhooks_worker({})
        finally:
            self.stack.stop("receiver")
        self._webhook_figures(n, pairs, keep_pace)

    @property
    def _subscribers_seen_s(self) -> float:
        return self.stack.settings.webhook_subscribers_refresh_s + 0.5

    def _webhooks_worker(self, env: dict[str, str]) -> None:
        self.stack.stop("webhooks")
        self.stack.worker("webhooks", "webhooks", "--idle", env={**self.stack.env, **env})

    def _webhook_run(
        self, mode: str, content: dict[str, Any], tag: str, receiver: str, url: str
    ) -> dict[str, Any]:
        """One campaign without an endpoint (``off``) or with one (``on``: then its events,
        waited for until all came)."""
        self.http.post(f"{receiver}/_reset").raise_for_status()
        if mode == "off":
            off = self._webhook_campaign(content, tag, None)
            if self._receiver_count(receiver)["requests"]:
                raise RuntimeError("webhooks: events were posted with no endpoint")
            return off
        hook = self._webhook_endpoint(url)
        on = self._webhook_campaign(content, tag, hook)
        at_end = self._receiver_count(receiver)["requests"]
        events = self._webhook_events(receiver, hook, self.scale.push, on)
        events["at_campaign_end"] = at_end
        started, finished = (_ts(on["campaign"][k]) for k in ("started_at", "finished_at"))
        events["lag_s"] = events["last_at"] - finished
        events["first_after_start_s"] = events["first_at"] - started
        on["events"] = events
        self._webhook_endpoint_gone(hook)
        return on

    # --- our own FCM transport (issue 22) --------------------------------------------

    def fcm_lean(self) -> None:
        """firebase-admin's raw loop (``send_each_async``, 2 calls of 50 in flight per
        process: its best setting here) against our transport's raw loop (lanes through
        ``LeanFcmSender.send``, its fastest setting of ``RAW_CANDIDATES["fcm-lean"]``),
        ``Scale.rounds`` rounds in alternating order, each process sending for the same
        seconds; then the ``push`` FCM campaign end to end with the bulk worker on each
        sender, the lean one in ``Scale.pairs`` pairs with its raw loop (raw first in
        one pair, campaign first in the next).
        ``lean_fcm_cpu_ratio``: our CPU per send over firebase-admin's (≤ 1/3 is the
        target); ``lean_fcm_efficiency``: the lean campaign's rate over the lean raw loop's."""
        n, tag = self.scale.push, "lean-fcm"
        self.seed(tag, n, fcm=True)
        content = {"title": "Bench {{name}}", "message": "Lean transport"}
        seconds = self.scale.tune_s * 2
        settings = {"admin": {"calls": 2, "batch": 50}}
        raw: dict[str, list[dict[str, float]]] = {"admin": [], "lean": []}
        campaigns: dict[str, list[dict[str, Any]]] = {"admin": [], "lean": []}
        warm = self.scale.raw_warm
        with (
            RawLoops(self.stack, "fcm", warm) as admin_loops,
            RawLoops(self.stack, "fcm-lean", warm) as lean,
        ):
            loops = {"admin": admin_loops, "lean": lean}
            tried, settings["lean"] = lean.fastest(RAW_CANDIDATES["fcm-lean"], self.scale.tune_s)
            for i in range(self.scale.rounds):
                for name in ("admin", "lean") if i % 2 == 0 else ("lean", "admin"):
                    raw[name].append(loops[name].run(settings[name], seconds))
            # Each sender as a deployment chooses it (DISPATCH_FCM_SENDER): a bulk worker
            # started with the setting (the stack's own, when it is that sender already).
            lean_env = {"DISPATCH_FCM_SENDER": "lean"}
            if self.stack.settings.fcm_sender == "lean":
                lean_env = {}
            try:
                self._restart_bulk({"DISPATCH_FCM_SENDER": "firebase-admin"})
                self.campaign("push", content, tag)  # warm-up, unmeasured
                campaigns["admin"].append(self._whole_campaign(content, tag, n))
                self._restart_bulk(lean_env)
                self.campaign("push", content, tag)  # warm-up: connection, token
                # Raw loop processes as new as the worker they are paired with (the ones
                # above have sent for minutes).
                with RawLoops(self.stack, "fcm-lean", warm) as paired:
                    lean_pairs = _alternating(
                        self.scale.pairs,
                        lambda: paired.run(settings["lean"], seconds),
                        partial(self._whole_campaign, content, tag, n),
                    )
                lean_raw_paired = [r for r, _ in lean_pairs]
                campaigns["lean"] = [c for _, c in lean_pairs]
            finally:
                if self._bulk_env:
                    self._restart_bulk({})  # the stack's own bulk worker again

        admin_cpu = _med([r["cpu_us_per_send"] for r in raw["admin"]])
        lean_cpu = _med([r["cpu_us_per_send"] for r in raw["lean"]])
        lean_rate = _med([r["sends_per_s"] for r in lean_raw_paired])
        efficiency = [
            c["sends_per_s"] / r["sends_per_s"]
            for c, r in zip(campaigns["lean"], lean_raw_paired, strict=True)
        ]
        self.results.update(
            {
                "fcm_lean_raw_fcm_sends_per_s": _med([r["sends_per_s"] for r in raw["admin"]]),
                "fcm_lean_raw_fcm_cpu_us_per_send": admin_cpu,
                "lean_fcm_raw_tried_sends_per_s": {
                    k: round(v["sends_per_s"]) for k, v in tried.items()
                },
                "lean_fcm_raw_setting": _label(settings["lean"]),
                "lean_fcm_raw_sends_per_s": _med([r["sends_per_s"] for r in raw["lean"]]),
                "lean_fcm_raw_cpu_us_per_send": lean_cpu,
                "lean_fcm_cpu_ratio": round(lean_cpu / admin_cpu, 3),
                "fcm_sends_per_s_admin": _med([c["sends_per_s"] for c in campaigns["admin"]]),
                "fcm_sends_per_s_lean": _med([c["sends_per_s"] for c in campaigns["lean"]]),
                "fcm_worker_cpu_us_per_send_admin": _med(
                    [c["worker_cpu_us_per_send"] for c in campaigns["admin"]]
                ),
                "fcm_worker_cpu_us_per_send_lean": _med(
                    [c["worker_cpu_us_per_send"] for c in campaigns["lean"]]
                ),
                "lean_fcm_raw_paired_sends_per_s": lean_rate,
                "lean_fcm_efficiency": round(statistics.median(efficiency), 2),
                "lean_fcm_efficiency_rounds": [round(e, 3) for e in efficiency],
                # Where the two cores went per message: the raw loop's and the simulator's,
                # against the campaign's worker, simulator and Valkey.
                "lean_fcm_raw_cpu_us_per_send_split": {
                    "raw": _med([r["cpu_us_per_send"] for r in lean_raw_paired]),
                    "sim": _med([r["sim_cpu_us_per_send"] for r in lean_raw_paired]),
                },
                "lean_fcm_campaign_cpu_us_per_send_split": {
                    name: _med([c[f"{name}_cpu_us_per_send"] for c in campaigns["lean"]])
                    for name in ("worker", "sim", "valkey")
                },
                # The machine's CPU left idle (median of the pairs): a campaign whose
                # pipeline stalls (the provider waiting on the worker and the worker on
                # it) leaves more of it than its raw loop.
                "lean_fcm_idle_share": {
                    "raw": _med([r["idle_share"] for r in lean_raw_paired], 3),
                    "campaign": _med([c["idle_share"] for c in campaigns["lean"]], 3),
                },
            }
        )

    def _restart_bulk(self, env: dict[str, str]) -> None:
        """The bulk worker stopped and started again with ``env`` over the stack's."""
        self.stack.stop("bulk")
        self._bulk_env = env
        proc = self.stack.spawn_worker(
            "bulk", "bulk", nice=BULK_NICE, env={**self.stack.env, **env}
        )
        wait_worker(proc)

    # --- audience control ----------------------------------------------------------

    def audience(self) -> None:
        """The FCM campaign of ``push`` devices without audience checks (category
        ``transactional``: no opt-out read, no cap) and with them (``marketing``, a push
        frequency cap set that never binds, and quiet hours that hold for none of the
        contacts' six zones during the runs: each contact's four opt-out fields and its
        time zone read, its time checked against the window in its zone, and a place taken
        under the cap for every contact of every page), ``audience_pairs``
        pairs (off/on, then on/off). Per pair both rates and the ratio, the
        ``audience_campaign_rate_ratio`` being the median; Valkey's CPU per send in each."""
        n, tag = self.scale.push, "audience-fcm"
        self.stack.run(
            lambda r: seed_contacts(r, demo.ACCOUNT, tag, n, fcm=True, zones=_BENCH_ZONES)
        )
        content = {"title": "Bench {{name}}", "message": "Audience"}
        caps = {"push": {"max": 1000, "window_s": 86400}}
        self.api("PUT", "/api/v1/settings/frequency_caps", json=caps)
        self.api("PUT", "/api/v1/settings/quiet_hours", json=_quiet_elsewhere(time.time()))
        self.campaign("push", content, tag, category="marketing")  # warm-up, unmeasured
        rows = []
        for i in range(self.scale.audience_pairs):
            order = ("off", "on") if i % 2 == 0 else ("on", "off")
            runs = {
                mode: self.campaign(
                    "push", content, tag, category="marketing" if mode == "on" else "transactional"
                )
                for mode in order
            }
            for mode, run in runs.items():
                skipped = run["campaign"]["stats"].get("skipped", 0)
                deferred = run["campaign"]["stats"].get("deferred", 0)
                if run["sends"] != n or skipped or deferred:
                    raise RuntimeError(f"audience {mode}: {run['campaign']['stats']}")
            off, on = runs["off"], runs["on"]
            rows.append(
                {
                    "off_sends_per_s": round(off["sends_per_s"]),
                    "on_sends_per_s": round(on["sends_per_s"]),
                    "ratio": round(on["sends_per_s"] / off["sends_per_s"], 3),
                    "off_valkey_cpu_us_per_send": round(off["valkey_cpu_us_per_send"], 1),
                    "on_valkey_cpu_us_per_send": round(on["valkey_cpu_us_per_send"], 1),
                    "off_worker_cpu_us_per_send": round(off["worker_cpu_us_per_send"]),
                    "on_worker_cpu_us_per_send": round(on["worker_cpu_us_per_send"]),
                }
            )
        self.api("PUT", "/api/v1/settings/frequency_caps", json={"push": None})
        self.api("DELETE", "/api/v1/settings/quiet_hours")
        self.results.update(
            {
                "audience_campaign_devices": n,
                "audience_campaign_rate_ratio": round(
                    statistics.median(r["ratio"] for r in rows), 2
                ),
                "audience_valkey_cpu_us_per_send_on": round(
                    statistics.median(r["on_valkey_cpu_us_per_send"] for r in rows), 1
                ),
                "audience_valkey_cpu_us_per_send_off": round(
                    statistics.median(r["off_valkey_cpu_us_per_send"] for r in rows), 1
                ),
                "audience_pairs": rows,
            }
        )

    def _webhook_figures(
        self,
        n: int,
        pairs: list[tuple[dict[str, Any], dict[str, Any]]],
        keep_pace: dict[str, Any] | None,
    ) -> None:
        def per_send(cpu: dict[str, float], sends: int) -> dict[str, int]:
            us = {name: round(s / sends * 1e6) for name, s in sorted(cpu.items())}
            return {name: v for name, v in us.items() if v >= 5}  # the idle left out

        def on_row(on: dict[str, Any]) -> dict[str, Any]:
            events = on["events"]
            after = events["distinct"] - events["at_campaign_end"]
            return {
                "on_sends_per_s": round(on["sends_per_s"]),
                "events_per_s": round(events["per_s"]),
                # events in while the campaign ran, per second of it; then the rest, per
                # second from its end to the last event
                "events_during_campaign_per_s": round(events["at_campaign_end"] / on["seconds"]),
                "events_catch_up_per_s": round(after / events["lag_s"]) if after > 0 else 0,
                "events_lag_s": round(events["lag_s"], 2),
                "campaign_s": round(on["seconds"], 2),
                # the first event, after the campaign's start; events in by its end
                "events_first_after_start_s": round(events["first_after_start_s"], 2),
                "events_at_campaign_end": events["at_campaign_end"],
                "events_received": events["distinct"],
                "events_duplicates": events["duplicates"],
                "events_contacts": events["contacts"],
                "receiver_connections": events["connections"],
                "events_signatures_verified": events["verified"],
                "event_latency_p50_s": round(events["latency_p50_s"], 2),
                "event_latency_p99_s": round(events["latency_p99_s"], 2),
                "endpoint_stats": events["endpoint_stats"],
                "peak_backlog": on["peak_backlog"],
                # µs of CPU per device: during the campaign, then from the campaign's end
                # to the last event, by process
                "on_cpu_us_per_send": per_send(on["cpu"], on["sends"]),
                "on_tail_cpu_us_per_send": per_send(on["cpu_tail"], on["sends"]),
            }

        rows = [
            {
                "off_sends_per_s": round(off["sends_per_s"]),
                "ratio": round(on["sends_per_s"] / off["sends_per_s"], 3),
                "off_cpu_us_per_send": per_send(off["cpu"], off["sends"]),
                **on_row(on),
            }
            for off, on in pairs
        ]
        ons = [on for _, on in pairs]
        off_rate = statistics.median([off["sends_per_s"] for off, _ in pairs])
        every_on = [*ons, *([keep_pace] if keep_pace else [])]
        self.results.update(
            {
                "webhook_campaign_devices": n,
                "webhook_campaign_sends_per_s_off": round(off_rate),
                "webhook_campaign_sends_per_s_on": _med([on["sends_per_s"] for on in ons]),
                "webhook_campaign_rate_ratio": _med(
                    [on["sends_per_s"] / off["sends_per_s"] for off, on in pairs], 2
                ),
                "webhook_events_per_s": _med([on["events"]["per_s"] for on in ons]),
                "webhook_events_during_campaign_per_s": _med(
                    [r["events_during_campaign_per_s"] for r in rows]
                ),
                "webhook_events_catch_up_per_s": _med([r["events_catch_up_per_s"] for r in rows]),
                "webhook_events_lag_s": _med([on["events"]["lag_s"] for on in ons], 2),
                "webhook_event_latency_p99_s": _med([r["event_latency_p99_s"] for r in rows], 2),
                "webhook_events_expected": n * len(every_on),
                "webhook_events_missing": n * len(every_on)
                - sum(on["events"]["distinct"] for on in every_on),
                "webhook_events_received": sum(on["events"]["distinct"] for on in every_on),
                "webhook_events_duplicates": sum(on["events"]["duplicates"] for on in every_on),
                "webhook_pairs": rows,
            }
        )
        if keep_pace:
            # the senders keeping pace (DISPATCH_WEBHOOK_BUSY_CPU_SHARE=1), one campaign,
            # against the median rate without webhooks
            self.results["webhook_keep_pace_rate_ratio"] = round(
                keep_pace["sends_per_s"] / off_rate, 2
            )
            self.results["webhook_keep_pace"] = on_row(keep_pace)

    def _cpu(self) -> dict[str, float]:
        """CPU seconds so far of every process of the stack, and Valkey's."""
        cpu = {name: proc.cpu_s() for name, proc in self.stack.procs.items()}
        return cpu | {"valkey": self.stack.valkey_info()["cpu_s"]}

    def _cpu_since(self, before: dict[str, float]) -> dict[str, float]:
        now = self._cpu()
        return {name: now[name] - before.get(name, 0.0) for name in now}

    def _webhook_campaign(
        self, content: dict[str, Any], tag: str, hook: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The campaign, the CPU of every process over it, and (webhooks on) the peak of
        the endpoint's queue, sampled as the campaign runs."""
        peak = [0]

        def sample() -> None:
            # Read with no endpoint too (an id that has none): the bench's own reads cost
            # the machine the same in both runs of a pair.
            endpoint_id = hook["id"] if hook is not None else "wh_none"
            queued, retrying = self.stack.run(webhook_deliveries.backlog, demo.ACCOUNT, endpoint_id)
            peak[0] = max(peak[0], queued + retrying)

        before = self._cpu()
        result = self.campaign("push", content, tag, each_poll=sample)
        result["cpu_at_end"] = self._cpu()
        result["cpu"] = {k: v - before.get(k, 0.0) for k, v in result["cpu_at_end"].items()}
        result["peak_backlog"] = peak[0]
        stats = result["campaign"]["stats"]
        if result["sends"] != self.scale.push or stats["failed"]:
            raise RuntimeError(f"webhooks campaign: {stats}")
        return result

    def _webhook_endpoint(self, url: str) -> dict[str, Any]:
        body = {"url": url, "events": ["push.delivered"], "description": "bench"}
        hook: dict[str, Any] = self.api("POST", "/api/v1/webhooks", json=body)["webhook"]
        # Until every process has read that the account has an endpoint (`worker.store.events`).
        time.sleep(self._subscribers_seen_s)
        return hook

    def _webhook_endpoint_gone(self, hook: dict[str, Any]) -> None:
        self.api("DELETE", f"/api/v1/webhooks/{hook['id']}")
        time.sleep(self._subscribers_seen_s)  # until no process writes its events any more

    def _receiver_count(self, receiver: str) -> dict[str, Any]:
        count: dict[str, Any] = self.http.get(f"{receiver}/_count").json()
        return count

    def _webhook_events(
        self, receiver: str, hook: dict[str, Any], n: int, run: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Until the receiver has ``n`` events and nothing more comes for the scale's
        ``events_settle_s`` (a repeat would), or nothing at all comes for 30 s (some are
        missing); then (into
        ``run``) every process's CPU since the campaign's end, and what the receiver got,
        a sample of signatures verified, and the endpoint's counters."""
        settle_s, give_up_s = self.scale.events_settle_s, 30.0
        last, changed = -1, time.monotonic()
        while True:
            count = self._receiver_count(receiver)["requests"]
            if count != last:
                last, changed = count, time.monotonic()
            quiet = time.monotonic() - changed
            if (count >= n and quiet >= settle_s) or quiet >= give_up_s:
                break
            time.sleep(0.1)
        if run is not None:  # before the receiver parses what it got
            run["cpu_tail"] = self._cpu_since(run["cpu_at_end"])
        got: dict[str, Any] = self.http.get(f"{receiver}/_stats", timeout=120).json()
        if not got["requests"]:
            raise RuntimeError("webhooks: the receiver got no event")
        verifier = Webhook(hook["secret"])
        for request in got["sample"]:
            verifier.verify(request["body"], request["headers"])  # raises if it does not
        got["verified"] = len(got["sample"])
        span = got["last_at"] - got["first_at"]
        got["per_s"] = (got["requests"] - 1) / span if span > 0 else 0.0
        got["endpoint_stats"] = self.stack.run(webhook_deliveries.stats, demo.ACCOUNT, hook["id"])
        return got


@dataclass(frozen=True)
class Target:
    """A figure's target: ``low`` ≤ value ≤ ``high`` (either may be open), judged only at
    the scales named (a tiny run checks that the code runs, not how fast)."""

    name: str
    low: float | None = None
    high: float | None = None
    scales: tuple[str, ...] = ("default", "full")

    def text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g}–{self.high:g}"
        return f"≥ {self.low:g}" if self.low is not None else f"≤ {self.high:g}"

    def met(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


# The one list of targets. An efficiency above 1.05 means the end-to-end path beat the
# library used alone: the baseline is weak, and that is a miss too.
TARGETS = [
    Target("fcm_efficiency", 0.8, 1.05),
    Target("apns_efficiency", 0.8, 1.05),
    Target("api_efficiency", 0.7, 1.05),
    Target("speedup_vs_naive", 3),
    Target("overhead_cpu_us_per_send", high=100),
    Target("valkey_cpu_us_per_send", high=30),
    Target("api_p99_ms", high=25),
    Target("whatsapp_campaign_rate_pct_of_cap", 95, 100),
    Target("otp_p99_ratio", high=2),
    Target("automation_late_p99_s", high=2),
    Target("fanout_s", high=60, scales=("full",)),  # a million contacts
    # A pool process SIGKILLed mid-campaign: its work taken over within 15 s, and no more
    # sent twice than it had in flight (3 slices of 125 devices: 4.7 % of 8,000).
    Target("crash_resume_s", high=15),
    Target("crash_duplicate_pct", high=5),
    # A push campaign with an endpoint subscribed to push.delivered (an event per device)
    # at 0.9 or more of its rate with none (issue 20).
    Target("webhook_campaign_rate_ratio", 0.9),
    Target("webhook_events_missing", high=0),
    Target("audience_campaign_rate_ratio", 0.9),
    Target("lean_fcm_cpu_ratio", high=1 / 3),
    Target("lean_fcm_efficiency", 0.8, 1.05),
]


def judge(results: dict[str, Any], scale: str, partial: bool) -> list[str]:
    """The targets missed at ``scale``, one ``MISSED name=value (target …)`` line each. A
    figure absent from a partial run (``BENCH_STEPS``) is not judged; from a whole run it
    is a miss."""
    missed = []
    for target in TARGETS:
        if scale not in target.scales:
            continue
        value = results.get(target.name)
        if value is None:
            if not partial:
                missed.append(f"MISSED {target.name}=not measured (target {target.text()})")
        elif not target.met(value):
            missed.append(f"MISSED {target.name}={value} (target {target.text()})")
    return missed


def _commit() -> str:
    """HEAD, with ``+dirty`` when tracked files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=SCRIPTS, capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def main() -> int:
    scale_name = os.environ.get("BENCH_SCALE", "default")
    if scale_name not in SCALES:
        raise SystemExit(f"unknown BENCH_SCALE {scale_name!r}: one of {', '.join(SCALES)}")
    scale = SCALES[scale_name]
    only = [s for s in os.environ.get("BENCH_STEPS", "").split(",") if s]
    started = time.monotonic()
    # A partial run writes a file of its own: the whole run's figures are never mixed
    # with (or relabelled by) a later run of some steps.
    default_out = f"bench/results-{'+'.join(only)}.json" if only else "bench/results.json"
    out = Path(os.environ.get("BENCH_RESULTS", default_out))
    with (
        tempfile.TemporaryDirectory(prefix="dispatch-bench-") as tmp,
        bench_stack(Path(tmp), settings=scale.settings) as stack,
    ):
        console.print(f"stack up in {time.monotonic() - started:.1f}s; scale {scale_name}: {scale}")
        bench = Bench(stack, scale)
        steps = [
            bench.push_paths,
            bench.naive,
            bench.whatsapp_cap,
            bench.otp,
            bench.api_paths,
            bench.fanout,
            bench.automations,
            bench.crash,
            bench.webhooks,
            bench.audience,
            bench.fcm_lean,
        ]
        unknown = set(only) - {step.__name__ for step in steps}
        if unknown:
            raise SystemExit(f"unknown BENCH_STEPS: {', '.join(sorted(unknown))}")
        if only:
            steps = [step for step in steps if step.__name__ in only]
        for step in steps:
            t0 = time.monotonic()
            step()
            console.print(f"[dim]{step.__name__}: {time.monotonic() - t0:.1f}s[/]")
        results = bench.results
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    missed = judge(results, scale_name, partial=bool(only))
    results |= {
        "bench_scale": scale_name,
        "bench_steps": [step.__name__ for step in steps],
        "bench_commit": _commit(),
        "bench_cores": os.cpu_count(),
        "bench_date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "bench_missed": missed,
    }
    targets = {t.name: t for t in TARGETS}
    table = Table("figure", "value", "target", "")
    for name, value in results.items():
        target = targets.get(name)
        if target is None or name == "bench_missed":
            table.add_row(name, str(value), "", "")
        elif scale_name not in target.scales:
            table.add_row(name, str(value), target.text(), f"[dim]judged at {target.scales[0]}[/]")
        else:
            ok = target.met(value)
            table.add_row(name, str(value), target.text(), "[green]ok[/]" if ok else "[red]miss[/]")
    console.print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    console.print(f"written to {out}")
    for line in missed:
        print(line)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(SCRIPTS))
    raise SystemExit(main())
