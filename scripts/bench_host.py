#!/usr/bin/env python3
"""Host latency benchmark: our TVM artifacts against onnxruntime and PyTorch, batch 1, 224x224, all cores.

Every measurement runs in its own fresh process (``--worker``), so no runtime's thread pool or allocator state
leaks into another. Baseline (ORT FP32 w=1) and model runs are interleaved A B A B ...; each ratio comes from a
neighbouring pair and the reported ratio is their median. Prints median and p90 latency, peak RSS (VmHWM) of the
worker process, artifact size and ratio, and for the models of :data:`ONE_THREAD` the median latency on one
thread too (measured in the same rounds; the Pi runs 4 threads, so this shows how latency scales with threads);
``--json`` writes the rows, ``--plot`` a PNG. For binary TVM models it also prints the cost model's binary MACs per
second end to end as a fraction of this CPU's popcount ceiling (``of ceiling``), and for every model its peak RSS
over the baseline's (``RSS ratio``).

Artifacts are cached under ``--artifacts`` with a fingerprint of what built them (the sources of bhvit's
``compile``, ``models`` and artifact-writing modules, the model key, threads and image size); a cached artifact
whose fingerprint differs is rebuilt, so a table never comes from stale kernels.

    TVM_NUM_THREADS=2 python3 scripts/bench_host.py --json runs/bench_host/bench.json --plot runs/bench_host/bench.png
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BASELINE = "ort-fp32-w1"
# key -> (format, precision, width, fp_downsample); "torch" runs the eager model with no artifact
MODELS = {
    "ort-fp32-w1": ("onnx", "fp32", 1, False),
    "ort-int8-w1": ("onnx-int8", "binary", 1, False),
    "ort-int8-w3": ("onnx-int8", "binary", 3, False),
    "torch-fp32-w1": ("torch", "fp32", 1, False),
    "tvm-fp32-w1": ("tvm", "fp32", 1, False),
    "tvm-binary-w1": ("tvm", "binary", 1, False),
    "tvm-binary-w2": ("tvm", "binary", 2, False),
    "tvm-binary-w3": ("tvm", "binary", 3, False),
    "tvm-binary-w3-fpds": ("tvm", "binary", 3, True),
}
ONE_THREAD = ("tvm-binary-w1", "tvm-binary-w3")  # also measured on one thread
FINGERPRINT_SUFFIX = ".build.json"


@dataclass
class Row:
    model: str
    median_ms: float
    p90_ms: float
    peak_rss_mib: float
    artifact_mib: float
    ratio: float | None
    median_1t_ms: float | None = None  # one thread (ONE_THREAD models only)
    rss_ratio: float | None = None  # peak RSS / the baseline's
    ceiling_fraction: float | None = None  # binary MACs per second end to end / the popcount ceiling (TVM binary)


def _source(key: str, img_size: int):
    from bhvit.compile.source import random_init

    _, precision, width, fpds = MODELS[key]
    return random_init("bhvit_tiny", precision=precision, width=width, fp_downsample=fpds or None, img_size=img_size)


def ceiling_fraction(key: str, median_ms: float, threads: int, img_size: int) -> float | None:
    """The cost model's binary MACs of ``key`` per second at ``median_ms``, as a fraction of this CPU's popcount
    ceiling on ``threads`` cores (None for a model that is not a binary TVM build, or an unknown ceiling)."""
    if MODELS[key][0] != "tvm" or MODELS[key][1] != "binary":
        return None
    from bhvit.device.profile import popcount_ceiling
    from bhvit.models.cost import model_cost

    ceiling, _ = popcount_ceiling(threads)
    if ceiling is None:
        return None
    return model_cost(_source(key, img_size).model).bops / (median_ms / 1e3) / ceiling


def fingerprint(key: str, threads: int, img_size: int) -> str:
    """sha256 of everything that decides what ``build`` writes: the code that compiles and the options."""
    import bhvit.compile
    import bhvit.device.artifact
    import bhvit.device.weights
    import bhvit.models

    files = [p for m in (bhvit.compile, bhvit.models) for p in Path(m.__file__).resolve().parent.rglob("*.py")]
    files += [Path(m.__file__).resolve() for m in (bhvit.device.artifact, bhvit.device.weights)]
    digest = hashlib.sha256(json.dumps([key, MODELS[key], threads, img_size]).encode())
    for path in sorted(files):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def build(key: str, root: Path, threads: int, img_size: int) -> Path | None:
    """Compile the artifact of ``key`` into ``root`` unless one built by the same code and options is there."""
    from bhvit.device.artifact import ArtifactError, read_metadata

    fmt = MODELS[key][0]
    if fmt == "torch":
        return None
    out = root / key
    stamp = root / f"{key}{FINGERPRINT_SUFFIX}"
    wanted = fingerprint(key, threads, img_size)
    try:
        read_metadata(out)
        if stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == wanted:
            return out
        print(f"rebuilding {key}: the code or options changed since it was built", file=sys.stderr)
    except ArtifactError:  # none yet, or an older artifact format: rebuild
        pass
    from bhvit.compile.compiler import CompileOptions, compile_model
    from bhvit.compile.targets import resolve_target

    t0 = time.perf_counter()
    compile_model(
        _source(key, img_size),
        CompileOptions(resolve_target("host", threads=threads), out, fmt, verify=False, overwrite=True),
    )
    stamp.write_text(json.dumps({"fingerprint": wanted}) + "\n")
    print(f"built {key} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(key: str, path: str, threads: int, img_size: int, warmup: int, iters: int) -> None:
    """Time one model in this (fresh) process; print one JSON line."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((1, 3, img_size, img_size)).astype("float32")
    if MODELS[key][0] == "torch":
        import torch

        torch.set_num_threads(threads)
        model = _source(key, img_size).model
        run = lambda: model(torch.from_numpy(x))  # noqa: E731
        ctx = torch.no_grad()
    else:
        import contextlib

        from bhvit.device.artifact import load_artifact
        from bhvit.device.runtime import load_model

        model = load_model(load_artifact(path), threads=threads)
        run, ctx = (lambda: model(x)), contextlib.nullcontext()
    times = []
    with ctx:
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            run()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({"times": times, "peak_rss_mib": _peak_rss_mib()}))


def _measure(key: str, path: Path | None, args, threads: int | None = None) -> dict:
    threads = threads or args.threads
    env = {**os.environ, "TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        key,
        str(path or ""),
        "--threads",
        str(threads),
        "--img-size",
        str(args.img_size),
        "--warmup",
        str(args.warmup),
        "--iters",
        str(args.iters),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {key} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _artifact_mib(path: Path | None) -> float:
    if path is None:
        return 0.0
    return sum(f.stat().st_size for f in path.iterdir() if f.name != "metadata.json") / 2**20


def bench(keys: list[str], args) -> list[Row]:
    paths = {k: build(k, args.artifacts, args.threads, args.img_size) for k in dict.fromkeys([BASELINE, *keys])}
    times: dict[str, list[float]] = {k: [] for k in paths}
    rss: dict[str, float] = {k: 0.0 for k in paths}
    ratios: dict[str, list[float]] = {k: [] for k in keys}
    one_thread: dict[str, list[float]] = {k: [] for k in keys if k in ONE_THREAD and args.threads > 1}
    for r in range(args.rounds):
        for key in keys:
            pair = {}
            for k in (BASELINE, key) if key != BASELINE else (BASELINE,):
                result = _measure(k, paths[k], args)
                pair[k] = statistics.median(result["times"])
                times[k] += result["times"]
                rss[k] = max(rss[k], result["peak_rss_mib"])
            ratios[key].append(pair[key] / pair[BASELINE])
            print(f"round {r + 1}: {key} {pair[key]:.2f} ms vs {BASELINE} {pair[BASELINE]:.2f} ms", file=sys.stderr)
            if key in one_thread:
                one_thread[key] += _measure(key, paths[key], args, threads=1)["times"]
    rows = []
    for k in paths:
        t = sorted(times[k])
        median = statistics.median(t)
        rows.append(
            Row(
                k,
                median,
                t[min(len(t) - 1, int(0.9 * len(t)))],
                rss[k],
                _artifact_mib(paths[k]),
                statistics.median(ratios[k]) if ratios.get(k) else None,
                statistics.median(one_thread[k]) if one_thread.get(k) else None,
                rss[k] / rss[BASELINE],
                ceiling_fraction(k, median, args.threads, args.img_size),
            )
        )
    return rows


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    bars = ax.bar(
        [r.model for r in rows],
        [r.median_ms for r in rows],
        yerr=[r.p90_ms - r.median_ms for r in rows],
        color=["tab:gray" if r.model.startswith(("ort", "torch")) else "tab:blue" for r in rows],
    )
    for bar, r in zip(bars, rows):
        if r.ratio is not None:
            ax.annotate(
                f"{r.ratio:.2f}x",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_ylabel("median latency, ms (batch 1)")
    ax.set_title(f"BHViT-Tiny on this host; ratio vs {BASELINE}")
    plt.xticks(rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated keys (default: all)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows as a JSON list here")
    ap.add_argument("--plot", type=Path, default=None, help="write a PNG bar chart here")
    ap.add_argument(
        "--artifacts",
        type=Path,
        default=Path("runs/bench_host/artifacts"),
        help="artifact cache (default: %(default)s)",
    )
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads (default: all cores)")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3, help="A/B pairs per model (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--worker", nargs=2, metavar=("KEY", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.threads, args.img_size, args.warmup, args.iters)
        return
    keys = [k for k in args.models.split(",") if k]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    rows = bench(keys, args)
    print(
        f"{'model':22s} {'median ms':>10s} {'p90 ms':>8s} {'peak RSS MiB':>13s} {'artifact MiB':>13s} {'ratio':>6s} "
        f"{'1 thread ms':>11s} {'RSS ratio':>9s} {'of ceiling':>10s}"
    )
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        single = "-" if r.median_1t_ms is None else f"{r.median_1t_ms:.2f}"
        ceil = "-" if r.ceiling_fraction is None else f"{r.ceiling_fraction:.1%}"
        print(
            f"{r.model:22s} {r.median_ms:10.2f} {r.p90_ms:8.2f} {r.peak_rss_mib:13.1f} {r.artifact_mib:13.2f} "
            f"{ratio:>6s} {single:>11s} {r.rss_ratio:9.3f} {ceil:>10s}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
