"""`make bench`'s verdict: one table of targets, judged at the scales each names, a
``MISSED`` line per miss and exit code 1 (the bench itself runs in
`tests/test_bench_smoke.py`)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(SCRIPTS))
    try:
        return importlib.import_module("bench")
    finally:
        sys.path.remove(str(SCRIPTS))


def _all_met(bench: ModuleType) -> dict[str, float]:
    """A value inside every target."""
    values = {}
    for target in bench.TARGETS:
        low, high = target.low, target.high
        values[target.name] = (
            (low + high) / 2 if low is not None and high is not None else (low or 0) + (high or 0)
        )
    return values


def test_every_target_met_is_no_miss(bench: ModuleType) -> None:
    assert bench.judge(_all_met(bench), "default", partial=False) == []
    assert bench.judge(_all_met(bench), "full", partial=False) == []


def test_a_miss_names_the_figure_its_value_and_its_target(bench: ModuleType) -> None:
    results = _all_met(bench) | {"api_p99_ms": 43.9, "fcm_efficiency": 1.13}
    assert bench.judge(results, "default", partial=False) == [
        "MISSED fcm_efficiency=1.13 (target 0.8–1.05)",
        "MISSED api_p99_ms=43.9 (target ≤ 25)",
    ]


def test_the_million_contact_fan_out_is_judged_at_full_scale_only(bench: ModuleType) -> None:
    results = _all_met(bench) | {"fanout_s": 75.0}
    assert bench.judge(results, "default", partial=False) == []
    assert bench.judge(results, "full", partial=False) == ["MISSED fanout_s=75.0 (target ≤ 60)"]


def test_a_tiny_run_judges_nothing(bench: ModuleType) -> None:
    assert bench.judge({"fcm_efficiency": 0.1}, "tiny", partial=False) == []


def test_a_figure_missing_from_a_whole_run_is_a_miss_not_from_a_partial_one(
    bench: ModuleType,
) -> None:
    results = _all_met(bench)
    del results["otp_p99_ratio"]
    assert bench.judge(results, "default", partial=False) == [
        "MISSED otp_p99_ratio=not measured (target ≤ 2)"
    ]
    assert bench.judge(results, "default", partial=True) == []


def test_a_campaign_slowed_by_its_webhooks_below_0_9_is_a_miss(bench: ModuleType) -> None:
    results = _all_met(bench) | {"webhook_campaign_rate_ratio": 0.84}
    assert bench.judge(results, "default", partial=False) == [
        "MISSED webhook_campaign_rate_ratio=0.84 (target ≥ 0.9)"
    ]
    assert bench.judge(results, "tiny", partial=False) == []
