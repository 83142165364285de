"""Latency of artifacts against the first one, all loaded in one process.

Each round runs every artifact once, the order reversed every other round; an artifact's ratio is the median over
the rounds of its latency divided by the first artifact's in the same round. ``bench_host.py`` measures the goals
in fresh processes, but this host switches between a fast and a slow state for seconds at a time, so two
processes seldom run in the same state (one w=3 artifact took 27-42 ms in back-to-back processes). Artifacts that
take turns within milliseconds see the same states, so a change of a few percent shows: this is the tool for
comparing two builds of one model while working on the compiler.

    TVM_NUM_THREADS=2 python3 scripts/ab_artifacts.py artifacts/before artifacts/after --rounds 300
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """One artifact's latencies over the rounds and its median per-round ratio to the first artifact."""

    artifact: str
    median_ms: float
    min_ms: float
    ratio: float


def compare(paths: list[Path], threads: int | None, rounds: int, warmup: int = 5) -> list[Comparison]:
    """Alternate single runs of the artifacts at ``paths`` for ``rounds`` rounds after ``warmup`` runs each."""
    from bhvit.device.artifact import ArtifactError, load_artifact
    from bhvit.device.runtime import load_model

    try:
        artifacts = [load_artifact(p) for p in paths]
    except ArtifactError as err:
        raise SystemExit(str(err)) from err
    sizes = sorted({a.meta.preprocess.input_size for a in artifacts})
    if len(sizes) != 1:
        raise SystemExit(f"the artifacts take different input sizes ({sizes}): compare builds of one model")
    models = [load_model(a, threads=threads) for a in artifacts]
    x = np.random.default_rng(0).standard_normal((1, 3, sizes[0], sizes[0])).astype(np.float32)
    for model in models:
        for _ in range(warmup):
            model(x)
    ms = np.zeros((len(models), rounds))
    for r in range(rounds):
        for i in range(len(models)) if r % 2 == 0 else reversed(range(len(models))):
            t0 = time.perf_counter()
            models[i](x)
            ms[i, r] = (time.perf_counter() - t0) * 1e3
    return [
        Comparison(str(p), float(np.median(ms[i])), float(ms[i].min()), float(np.median(ms[i] / ms[0])))
        for i, p in enumerate(paths)
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifacts", nargs="+", type=Path, help="artifact directories; the first is the reference")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="inference threads (default: $TVM_NUM_THREADS for a TVM artifact when set, else the artifact's own)",
    )
    ap.add_argument("--rounds", type=int, default=300, help="rounds of one run per artifact (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed runs per artifact first (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    args = ap.parse_args(argv)
    if len(args.artifacts) < 2 or args.rounds < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        ap.error("give at least two artifacts, one round, no negative warm-up and at least one thread")
    rows = compare(args.artifacts, args.threads, args.rounds, args.warmup)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
        return
    width = max(len(r.artifact) for r in rows)
    print(f"{'artifact':{width}}  median ms  min ms  ratio to the first (median over {args.rounds} rounds)")
    for r in rows:
        print(f"{r.artifact:{width}}  {r.median_ms:9.2f}  {r.min_ms:6.2f}  {r.ratio:.3f}")


if __name__ == "__main__":
    main()
