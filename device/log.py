"""Per-frame logs (CSV or JSONL, chosen by extension), flushed after every record so none is lost on exit.

A log is always a new file: an existing one is never overwritten or appended to (``FileExistsError``).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["LOG_FORMATS", "FrameLog", "next_run_dir"]

LOG_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def next_run_dir(root: Path) -> Path:
    """Create and return ``root/NNN``, one above the highest existing number (never reuses a folder)."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    number = max(taken, default=0) + 1
    while True:
        path = root / f"{number:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another run took it meanwhile
            number += 1


def _cell(value: Any) -> Any:
    """CSV cell: lists become ``a;b``, nested pairs ``label:0.91;...``."""
    if isinstance(value, (list, tuple)):
        return ";".join(":".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in value)
    return value


class FrameLog:
    """Record writer to a new file (``FileExistsError`` when ``path`` exists); CSV columns come from the first
    record (lists joined by ``;``, pairs by ``:``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.format = LOG_FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise ValueError(f"log file {self.path.name!r}: unknown extension, need one of {sorted(LOG_FORMATS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "x", newline="", encoding="utf-8")
        self._csv: csv.DictWriter | None = None
        self.records = 0

    def write(self, record: dict[str, Any]) -> None:
        if self.format == "jsonl":
            self._fh.write(json.dumps(record) + "\n")
        else:
            if self._csv is None:
                self._csv = csv.DictWriter(self._fh, fieldnames=list(record), extrasaction="ignore")
                self._csv.writeheader()
            self._csv.writerow({k: _cell(v) for k, v in record.items()})
        self._fh.flush()
        self.records += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> FrameLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
