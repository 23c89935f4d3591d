"""`make bench` must keep working: its code runs end to end on a tiny size (seconds, not a
measurement: `make test` never times anything) and writes every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Raw/end-to-end pairs written per push step at the tiny size (`pairs` of its Scale in
# scripts/bench.py, which runs as a script and is not imported here): one of each order.
TINY_PAIRS = 2
FIGURES = {
    "raw_fcm_sends_per_s",
    "raw_apns_sends_per_s",
    "fcm_sends_per_s",
    "apns_sends_per_s",
    "fcm_efficiency",
    "apns_efficiency",
    "naive_sends_per_s",
    "speedup_vs_naive",
    "overhead_cpu_us_per_send",
    "valkey_cpu_us_per_send",
    "api_bare_per_s",
    "api_bare_fastapi_per_s",
    "api_enqueue_per_s",
    "api_efficiency",
    "api_p99_ms",
    "whatsapp_campaign_rate_pct_of_cap",
    "otp_p99_ms_idle",
    "otp_p99_ms_during_campaign",
    "fanout_s",
    "fanout_peak_rss_mb",
    "automation_late_p99_s",
    "automation_worker_rss_peak_mb",
    "webhook_campaign_sends_per_s_off",
    "webhook_campaign_sends_per_s_on",
    "webhook_campaign_rate_ratio",
    "webhook_events_per_s",
    "webhook_events_lag_s",
    "webhook_events_catch_up_per_s",
    "webhook_events_missing",
    "audience_campaign_rate_ratio",
    "audience_valkey_cpu_us_per_send_on",
    "webhook_events_received",
    "lean_fcm_raw_setting",
    "lean_fcm_raw_sends_per_s",
    "lean_fcm_raw_cpu_us_per_send",
    "lean_fcm_cpu_ratio",
    "fcm_sends_per_s_lean",
    "lean_fcm_efficiency",
    "webhook_events_duplicates",
}


@pytest.mark.timeout(300)
def test_the_bench_runs_on_a_tiny_size_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    out.write_text('{"stale_figure": 1}')  # a run rewrites the file whole
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")} | {
        "BENCH_SCALE": "tiny",
        "BENCH_RESULTS": str(out),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results.keys() >= FIGURES, FIGURES - results.keys()
    assert "stale_figure" not in results
    assert results["bench_scale"] == "tiny"
    assert results["bench_cores"] >= 1
    assert len(results["bench_commit"]) >= 12
    assert results["bench_missed"] == []  # nothing is judged at the tiny size
    for platform in ("fcm", "apns"):
        # every raw setting tried, and every raw/end-to-end pair written
        assert len(results[f"raw_{platform}_tried_sends_per_s"]) >= 3
        assert len(results[f"{platform}_pairs"]) == TINY_PAIRS
    assert len(results["lean_fcm_efficiency_rounds"]) == TINY_PAIRS
    # FCM campaigns are compared with the raw loop of the library the workers send with
    assert (results["raw_fcm_loop"], results["raw_apns_loop"]) == ("fcm-lean", "apns")
    assert len(results["lean_fcm_raw_tried_sends_per_s"]) >= 3
    # the machine's idle share, a fraction, for the raw loop and the campaign alike
    assert results["lean_fcm_idle_share"].keys() == {"raw", "campaign"}
    assert all(0 <= v < 1 for v in results["lean_fcm_idle_share"].values())
    assert all(results[k] > 0 for k in FIGURES if k.endswith(("_per_s", "_s", "_mb", "_ms")))
    # Webhooks on: one event per device of each run, each once, signatures checked.
    assert results["webhook_events_received"] == results["webhook_events_expected"]
    assert results["webhook_events_duplicates"] == 0
    assert len(results["webhook_pairs"]) >= 1
    assert all(p["events_signatures_verified"] > 0 for p in results["webhook_pairs"])
    assert "fanout_s" in done.stdout  # the table was printed
