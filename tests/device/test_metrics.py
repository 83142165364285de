"""Latency statistics and peak-RSS measurement."""

from __future__ import annotations

import numpy as np
from bhvit.device.metrics import LatencyRecorder, memory_status, peak_rss_mb, reset_peak_rss, rss_mb


def test_latency_percentiles_match_numpy():
    values = np.random.default_rng(0).gamma(2.0, 10.0, 999)
    recorder = LatencyRecorder()
    for v in values:
        recorder.add(v)
    summary = recorder.summary()
    assert summary["count"] == 999
    np.testing.assert_allclose([summary["p50"], summary["p90"], summary["p99"]], np.percentile(values, [50, 90, 99]))
    assert abs(summary["mean"] - values.mean()) < 1e-9


def test_latency_reservoir_keeps_fixed_size_and_distribution():
    recorder = LatencyRecorder(capacity=1000)
    for v in np.arange(100_000, dtype=float):
        recorder.add(v)
    assert recorder.count == 100_000 and recorder._samples.size == 1000
    assert abs(recorder.percentile(50) - 50_000) < 5_000


def test_latency_summary_is_empty_before_samples():
    assert LatencyRecorder().summary()["p50"] is None


def test_peak_rss_resets_after_a_freed_allocation():
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
    peak_with_block = peak_rss_mb()
    del block
    assert reset_peak_rss()
    assert peak_rss_mb() < peak_with_block - 32
    assert rss_mb() <= peak_rss_mb() + 1
    assert memory_status()["VmHWM"] > 0
