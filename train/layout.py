"""The files of a ``bhvit-train`` run directory: ``<out>/phase<N>/<file>``, read by scripts that drive training."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BEST", "LAST", "METRICS", "RESULT", "INIT_REPORT", "CONFIG", "phase_dir"]

BEST = "best.safetensors"  # the best validation epoch's checkpoint
LAST = "last.safetensors"  # the latest epoch with the resume state
METRICS = "metrics.jsonl"  # one JSON line per epoch
RESULT = "result.json"  # written when the phase has finished
INIT_REPORT = "init_report.json"  # what a warm start loaded
CONFIG = "config.json"  # the phase's model spec and options


def phase_dir(out: Path, number: int) -> Path:
    """Where phase ``number`` of the run in ``out`` writes its files."""
    return Path(out) / f"phase{number}"
