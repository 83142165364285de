"""Latency statistics in constant memory, and peak-RSS measurement via /proc/self/status (VmHWM, clear_refs)."""

from __future__ import annotations

import logging
import random
import resource
import sys
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["LatencyRecorder", "memory_status", "peak_rss_mb", "reset_peak_rss", "rss_mb", "ru_maxrss_mb"]

_MB = 1024 * 1024


class LatencyRecorder:
    """Collects latencies (ms); exact percentiles up to ``capacity`` samples, a uniform reservoir beyond.

    The buffer is allocated once, so memory stays flat however long the run.
    """

    def __init__(self, capacity: int = 100_000, seed: int = 0) -> None:
        self._samples = np.empty(capacity, dtype=np.float64)
        self._rng = random.Random(seed)
        self.count = 0
        self.total = 0.0

    def add(self, ms: float) -> None:
        if self.count < len(self._samples):
            self._samples[self.count] = ms
        else:  # Algorithm R: keep each of the n samples with probability capacity / n
            slot = self._rng.randrange(self.count + 1)
            if slot < len(self._samples):
                self._samples[slot] = ms
        self.count += 1
        self.total += ms

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0-100), or ``None`` before the first sample."""
        kept = self._samples[: min(self.count, len(self._samples))]
        return float(np.percentile(kept, q)) if len(kept) else None

    def summary(self) -> dict[str, float | int | None]:
        """count, mean, min, p50, p90, p99, max (ms)."""
        kept = self._samples[: min(self.count, len(self._samples))]
        if not len(kept):
            return {"count": 0, "mean": None, "min": None, "p50": None, "p90": None, "p99": None, "max": None}
        p50, p90, p99 = np.percentile(kept, [50, 90, 99])
        return {
            "count": self.count,
            "mean": self.total / self.count,
            "min": float(kept.min()),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "max": float(kept.max()),
        }


def memory_status() -> dict[str, int]:
    """The ``Vm*`` lines of /proc/self/status in bytes (empty where /proc is unavailable)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    status = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if key.startswith("Vm") and len(parts) == 2 and parts[1] == "kB":
            status[key] = int(parts[0]) * 1024
    return status


def rss_mb() -> float | None:
    """Current resident set size (VmRSS) in MiB."""
    value = memory_status().get("VmRSS")
    return value / _MB if value is not None else None


def peak_rss_mb() -> float | None:
    """Peak resident set size since start or the last :func:`reset_peak_rss` (VmHWM) in MiB."""
    value = memory_status().get("VmHWM")
    return value / _MB if value is not None else None


def ru_maxrss_mb() -> float:
    """getrusage peak RSS in MiB (KiB on Linux, bytes on macOS); survives exec, never reset."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / (_MB if sys.platform == "darwin" else 1024)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/self/clear_refs``); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as err:
        logger.warning("cannot reset peak RSS (%s); peak includes loading", err)
        return False
    return True
