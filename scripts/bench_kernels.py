#!/usr/bin/env python3
"""Micro-benchmark of the binary kernels on BHViT shapes, against the CPU's popcount ceiling.

x86 (host): times each kernel and its activation pack with ``time_evaluator``; cases are run
interleaved (A B A B ...) for ``--rounds`` rounds and the medians reported, because a shared host
flips between fast and slow states. Throughput is GOP/s = 2*M*N*K / time (K counts real inputs,
not the padding bits of partial words).

Ceiling (Zen 4): one ``vpopcntq zmm`` (512 bit-MACs) retires per cycle per core, and each bit-MAC
is 2 ops, so ceiling = 1024 ops/cycle x clock (max "cpu MHz" in /proc/cpuinfo, or ``--ghz``) x
threads. The xor and add that go with each popcount share the same vector pipes, so ~67 % of that
is the practical limit of this inner loop.

aarch64 (Cortex-A76, Raspberry Pi 5): cross-compiles the same kernels, extracts the innermost
loop holding ``cnt``, and runs ``llvm-mca -mcpu=cortex-a76`` on it: bit-MAC/cycle = bits counted
per iteration (128 per ``cnt.16b``, 64 per ``cnt.8b``) / (cycles per iteration); the A76 ceiling is
85 (3 SIMD ops per 128 bit-MACs on 2 pipes). Columns ``udot`` and ``fp``: the micro-kernel's byte-count
sums and the float instructions in the loop (an unrolled tile's epilogue).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[1, 3], help="BHViT width multipliers")
    ap.add_argument("--threads", type=int, default=2, help="TVM_NUM_THREADS")
    ap.add_argument("--mcpu", default="znver4", help="x86 LLVM CPU")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    ap.add_argument("--number", type=int, default=10, help="calls averaged per timing")
    ap.add_argument("--ghz", type=float, default=None, help="clock for the ceiling (default: /proc/cpuinfo)")
    ap.add_argument("--no-mca", action="store_true", help="skip the aarch64 llvm-mca analysis")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    return ap.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:
    os.environ.setdefault("TVM_NUM_THREADS", str(ARGS.threads))

import numpy as np  # noqa: E402
import tvm  # noqa: E402
from bhvit.compile.kernels import packing, primfuncs  # noqa: E402
from bhvit.compile.kernels import reference as ref  # noqa: E402
from bhvit.compile.kernels.params import AttentionParams, Conv2dParams, DenseParams  # noqa: E402
from bhvit.compile.kernels.schedule.register_transpose import PIPELINE  # noqa: E402
from tvm.target import Target  # noqa: E402

A76 = Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"], "num-cores": 4})
A76_CEILING = 85.0  # bit-MAC/cycle


@dataclass
class Case:
    name: str
    ops: int  # 2 * MACs
    kernel: tuple  # (func builder(target), numpy args, out shape)
    pack: tuple  # (func builder(target), numpy args, out shape)
    times: dict = field(default_factory=lambda: {"kernel": [], "pack": []})


def dense_case(name: str, m: int, k: int, n: int, rng) -> Case:
    p = DenseParams(m, k, n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = np.where(rng.random((n, k)) < 0.5, 1, -1)
    kargs = [ref.pack_rows(x), packing.dense_weight(w), np.ones(n, np.float32), np.zeros(n, np.float32)]
    return Case(
        name,
        2 * m * n * k,
        (lambda t: primfuncs.dense(p, True, t), kargs, ((m, n), "float32")),
        (lambda t: primfuncs.pack_rows((m, k), True, t), [x, np.zeros(k, np.float32)], ((m, p.k_words), "uint64")),
    )


def conv_case(name: str, p: Conv2dParams, rng) -> Case:
    x = rng.standard_normal((p.batch, p.in_channels, p.height, p.width)).astype(np.float32)
    w = np.where(rng.random((p.out_channels, p.in_per_group, *p.kernel)) < 0.5, 1, -1)
    g, og = p.groups, p.out_per_group
    xp = ref.pack_channels(x, None, g)
    kargs = [xp, packing.conv_weight(w, g), np.ones((g, og), np.float32), np.zeros((g, og), np.float32)]
    if p.reads_padding:
        kargs += list(packing.conv_border(p, w))
    out = ((p.batch, g, og, p.out_height, p.out_width), "float32")
    ops = 2 * p.batch * p.out_channels * p.out_height * p.out_width * p.taps
    return Case(
        name,
        ops,
        (lambda t: primfuncs.conv2d(p, "NCHW", True, t), kargs, out),
        (
            lambda t: primfuncs.pack_channels(x.shape, True, g, "NCHW", t),
            [x, np.zeros(p.in_channels, np.float32)],
            (xp.shape, "uint64"),
        ),
    )


def qk_case(name: str, p: AttentionParams, rng) -> Case:
    shape = (p.batch, p.heads, p.tokens, p.dim)
    q, k = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    return Case(
        name,
        2 * p.batch * p.heads * p.tokens * p.tokens * p.dim,
        (lambda t: primfuncs.qk(p, t), [ref.pack_rows(q), ref.pack_rows(k)], ((*shape[:3], p.tokens), "float32")),
        (lambda t: primfuncs.pack_rows(shape, False, t), [q], ((*shape[:3], p.dim_words), "uint64")),
    )


def bhvit_cases(widths: list[int], rng) -> list[Case]:
    """Stage-0/1 MSGDC convs, downsampling convs, the MLP/attention denses and the stage-2 windowed attention's
    sign(q)·sign(k)ᵀ (4 windows x 4 heads x 53 tokens) at 224x224, batch 1."""
    cases = []
    for wm in widths:
        c0, i0 = 64 * wm, 512 * wm
        for d in (1, 3, 5):
            cases.append(
                conv_case(
                    f"w{wm} s0 conv3x3 g4 d{d} 56x56x{c0}",
                    Conv2dParams(1, c0, c0, 56, 56, (3, 3), padding=(d, d), dilation=(d, d), groups=4),
                    rng,
                )
            )
        cases.append(
            conv_case(
                f"w{wm} s1 conv3x3 g4 d3 28x28x{2 * c0}",
                Conv2dParams(1, 2 * c0, 2 * c0, 28, 28, (3, 3), padding=(3, 3), dilation=(3, 3), groups=4),
                rng,
            )
        )
        cases.append(
            conv_case(
                f"w{wm} down0 2x2/2 56x56 {c0}->{2 * c0}",
                Conv2dParams(1, c0, 2 * c0, 56, 56, (2, 2), stride=(2, 2)),
                rng,
            )
        )
        cases.append(
            conv_case(
                f"w{wm} down1 2x2/2 28x28 {2 * c0}->{4 * c0}",
                Conv2dParams(1, 2 * c0, 4 * c0, 28, 28, (2, 2), stride=(2, 2)),
                rng,
            )
        )
        for label, m, k, n in (
            ("s0 fc1", 3136, c0, i0),
            ("s0 fc2", 3136, i0, c0),
            ("s1 fc1", 784, 2 * c0, 2 * i0),
            ("s1 fc2", 784, 2 * i0, 2 * c0),
            ("s2 qkv", 212, 4 * c0, 4 * c0),
            ("s2 fc1", 196, 4 * c0, 2 * i0),
            ("s3 fc2", 49, 4 * i0, 8 * c0),
        ):
            cases.append(dense_case(f"w{wm} {label} {m}x{k}x{n}", m, k, n, rng))
        cases.append(qk_case(f"w{wm} s2 q·kᵀ 4x4x53x{c0}", AttentionParams(4, 4, 53, c0), rng))
    return cases


def _timer(builder, args, out, target, number):
    lib = tvm.tirx.build(tvm.IRModule({"main": builder(target)}), target=target, pipeline=PIPELINE)
    dev = tvm.cpu()
    tensors = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in args] + [
        tvm.runtime.empty(out[0], out[1], dev)
    ]
    ev = lib.time_evaluator("main", dev, number=number, repeat=1)
    ev(*tensors)  # warm up
    return lambda: ev(*tensors).mean


def clock_ghz() -> float:
    try:
        mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", open("/proc/cpuinfo").read())]
    except OSError:
        mhz = []
    return max(mhz) / 1000 if mhz else float("nan")


def run_x86(cases: list[Case], target: Target, rounds: int, number: int) -> None:
    timers = [(c, {k: _timer(*getattr(c, k), target, number) for k in ("kernel", "pack")}) for c in cases]
    for _ in range(rounds):  # interleaved: every case once per round
        for case, timer in timers:
            for key, fn in timer.items():
                case.times[key].append(fn())


def hot_loop(asm: str) -> list[str]:
    """The smallest backward-branch loop body with the most ``cnt`` instructions."""
    lines = asm.splitlines()
    best: list[str] = []
    for i, line in enumerate(lines):
        label = re.match(r"^(\.?L\w+):", line)
        if not label:
            continue
        branch = re.compile(rf"^\t(?:b|b\.\w+|cbn?z|tbn?z)\s(?:.*[\s,])?{re.escape(label.group(1))}$")
        ends = [j for j in range(i + 1, len(lines)) if branch.match(lines[j])]
        if not ends:
            continue
        body = [
            ln for ln in lines[i + 1 : ends[-1] + 1] if ln.startswith("\t") and not ln.strip().startswith((".", "//"))
        ]
        n_cnt = sum(ln.split()[0] == "cnt" for ln in body)
        if n_cnt and (not best or (n_cnt, -len(body)) > (sum(ln.split()[0] == "cnt" for ln in best), -len(best))):
            best = body
    return best


MCA_CPU = "cortex-a76"  # llvm-mca's scheduling model (LLVM 14 and 19 give the Cortex-A57's to this name)


def mca(body: list[str], cpu: str = MCA_CPU, exe: str | None = None) -> dict:
    """llvm-mca (``exe``, else ``llvm-mca`` on the PATH, else the newest ``llvm-mca-N``) on a loop body with the
    scheduling model of ``cpu``: cycles per iteration and bit-MAC/cycle."""
    exe = exe or shutil.which("llvm-mca") or _newest_llvm_mca()
    counts = {op: sum(ln.split()[0] == op for ln in body) for op in ("cnt", "udot", "eor")}
    # bits counted: 128 per cnt.16b, 64 per cnt.8b (the scalar popcount of one word)
    bits = sum(128 if ".16b" in ln else 64 for ln in body if ln.split()[0] == "cnt")
    # float instructions: the loop holds (part of) the float epilogue, not the reduction alone
    fp = sum(ln.split()[0].startswith(("f", "scvtf", "ucvtf", "bif", "bsl", "bit")) for ln in body)
    info = {"instructions": len(body), **counts, "bits": bits, "fp": fp, "cpu": cpu}
    if exe is None:
        return {**info, "error": "llvm-mca not found"}
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        f.write("\n".join(body) + "\n")
    out = subprocess.run(
        [exe, "-mtriple=aarch64-linux-gnu", f"-mcpu={cpu}", "-iterations=200", f.name],
        capture_output=True,
        text=True,
    )
    os.unlink(f.name)
    m = re.search(r"Total Cycles:\s+(\d+)", out.stdout)
    if not m:
        return {**info, "error": out.stderr.strip()[:200]}
    cycles = int(m.group(1)) / 200
    return {
        **info,
        "tool": os.path.basename(exe),
        "cycles_per_iter": cycles,
        "bit_mac_per_cycle": bits / cycles,
        "pct_of_a76_ceiling": 100 * bits / cycles / A76_CEILING,
    }


def _newest_llvm_mca() -> str | None:
    return next((shutil.which(f"llvm-mca-{v}") for v in range(22, 13, -1) if shutil.which(f"llvm-mca-{v}")), None)


def run_a76(cases: list[Case]) -> list[dict]:
    rows = []
    for case in cases:
        asm = tvm.tirx.build(tvm.IRModule({"main": case.kernel[0](A76)}), A76, PIPELINE).inspect_source("asm")
        rows.append({"name": case.name, **mca(hot_loop(asm))})
    return rows


def main() -> int:
    args = ARGS
    target = Target({"kind": "llvm", "mcpu": args.mcpu, "num-cores": args.threads})
    cases = bhvit_cases(args.widths, np.random.default_rng(0))
    ghz = args.ghz or clock_ghz()
    ceiling = 1024 * ghz * args.threads  # GOP/s
    print(
        f"x86 {args.mcpu}, {tvm.runtime.num_threads()} threads, clock {ghz:.2f} GHz "
        f"-> popcount ceiling {ceiling:.0f} GOP/s",
        file=sys.stderr,
    )
    run_x86(cases, target, args.rounds, args.number)
    results = {"target": args.mcpu, "threads": args.threads, "ghz": ghz, "ceiling_gops": ceiling, "x86": [], "a76": []}
    print(f"{'case':44s} {'kernel us':>10s} {'GOP/s':>7s} {'% ceil':>6s} {'pack us':>8s} {'+pack GOP/s':>11s}")
    for c in cases:
        tk, tp = (statistics.median(c.times[k]) for k in ("kernel", "pack"))
        row = {
            "name": c.name,
            "ops": c.ops,
            "kernel_us": tk * 1e6,
            "pack_us": tp * 1e6,
            "gops": c.ops / tk / 1e9,
            "gops_with_pack": c.ops / (tk + tp) / 1e9,
            "pct_of_ceiling": 100 * c.ops / tk / 1e9 / ceiling,
        }
        results["x86"].append(row)
        print(
            f"{c.name:44s} {row['kernel_us']:10.1f} {row['gops']:7.0f} {row['pct_of_ceiling']:6.1f} "
            f"{row['pack_us']:8.1f} {row['gops_with_pack']:11.0f}"
        )
    if not args.no_mca:
        print("\naarch64 cortex-a76 hot loop (llvm-mca)")
        print(
            f"{'case':44s} {'instr':>5s} {'cnt':>4s} {'udot':>4s} {'fp':>4s} {'cyc/it':>7s} {'bitMAC/cyc':>10s} "
            f"{'% of 85':>7s}"
        )
        for row in run_a76(cases):
            results["a76"].append(row)
            if "error" in row:
                print(f"{row['name']:44s} {row['error']}")
                continue
            print(
                f"{row['name']:44s} {row['instructions']:5d} {row['cnt']:4d} {row['udot']:4d} {row['fp']:4d} "
                f"{row['cycles_per_iter']:7.1f} "
                f"{row['bit_mac_per_cycle']:10.1f} {row['pct_of_a76_ceiling']:7.1f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
