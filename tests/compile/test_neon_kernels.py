"""The Cortex-A76 binary kernels (NEON ``eor``/``cnt``/``udot`` micro-kernel, int32 sums, wide float epilogue)
equal the numpy oracles when run under qemu-aarch64 as a Cortex-A76, and their code holds the micro-kernel.

The shapes are odd on purpose: an odd number of column pairs (the last pair reduced alone), a reduction of 3 and
5 words, conv tiles with the row operand second (NCHW row vectors) and first (NHWC), a GEMM feeding pack/pool,
A·V's 3 level masks against one word of v in tiles of one row (53 queries) and of two.
The assembly checks run wherever TVM does; the emulated run needs the arm64 root of scripts/qemu_setup.sh."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
from bhvit.compile.kernels import packing, primfuncs  # noqa: E402
from bhvit.compile.kernels import reference as ref  # noqa: E402
from bhvit.compile.kernels.params import AttentionParams, Conv2dParams, DenseParams  # noqa: E402
from bhvit.compile.kernels.schedule import select  # noqa: E402
from bhvit.compile.kernels.schedule.generic import MICRO_KERNEL_ATTR, choose_tile, tensorized  # noqa: E402
from tvm.target import Target  # noqa: E402

pytestmark = pytest.mark.tvm

A76 = Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]})
ROOT = Path(os.environ.get("BHVIT_PI_ROOT", "/var/tmp/pi-root"))
SITE = ROOT / "opt/site"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

GUEST = r"""
import ctypes, sys, numpy as np, tvm_ffi
ctypes.CDLL(sys.argv[2] + "/tvm/lib/libtvm_runtime.so", ctypes.RTLD_GLOBAL)  # what the kernels call back into
d = sys.argv[1]
cases = np.load(d + "/cases.npz")
for name in sorted({k.split("/")[0] for k in cases.files}):
    args = [np.ascontiguousarray(cases[f"{name}/in{i}"]) for i in range(100) if f"{name}/in{i}" in cases.files]
    outs = [np.zeros_like(cases[f"{name}/out{i}"]) for i in range(10) if f"{name}/out{i}" in cases.files]
    tvm_ffi.load_module(f"{d}/{name}.so")["main"](*[tvm_ffi.from_dlpack(a) for a in args + outs])
    np.savez(f"{d}/{name}.got.npz", *outs)
print("done")
"""


def _rng():
    return np.random.default_rng(12)


def _signs(rng, *shape):
    return np.where(rng.random(shape) < 0.5, 1, -1).astype(np.int64)


def _dense_case(m, k, n, r):
    rng = _rng()
    x, w, th = rng.standard_normal((m, k)).astype(np.float32), _signs(rng, n, k), rng.standard_normal(k).astype("f4")
    scale, bias = rng.random(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    residual = (rng.standard_normal((m, r)) * 8).astype(np.float32)
    act = np.stack([rng.standard_normal(n), rng.random(n), rng.standard_normal(n)]).astype(np.float32)
    func = primfuncs.dense(DenseParams(m, k, n), True, A76, r, True)
    args = [ref.pack_rows(x, th), packing.dense_weight(w), scale, bias, residual, act]
    return func, args, [ref.dense(x, w, th, scale, bias, residual, act)]


def _pack_pool_case(m, k, n, ratio):
    rng = _rng()
    x, w, th = rng.standard_normal((m, k)).astype(np.float32), _signs(rng, n, k), rng.standard_normal(k).astype("f4")
    scale, bias, next_th = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    residual = (rng.standard_normal((m, n)) * 8).astype(np.float32)
    act = np.stack([rng.standard_normal(n), rng.random(n), rng.standard_normal(n)]).astype(np.float32)
    func = primfuncs.dense_pack_pool(DenseParams(m, k, n), ratio, True, A76, n, True, True)
    args = [ref.pack_rows(x, th), packing.dense_weight(w), scale, bias, residual, act, next_th]
    return func, args, list(ref.dense_pack_pool(x, w, th, scale, bias, residual, act, next_th, ratio))


def _conv_case(layout, **kw):
    p = Conv2dParams(batch=1, **kw)
    rng = _rng()
    x = rng.standard_normal((1, p.in_channels, p.height, p.width)).astype(np.float32)
    w, th = _signs(rng, p.out_channels, p.in_per_group, *p.kernel), rng.standard_normal(p.in_channels).astype("f4")
    scale, bias = rng.random(p.out_channels).astype(np.float32), rng.standard_normal(p.out_channels).astype("f4")
    xl = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    args = [ref.pack_channels(xl, th, p.groups, layout), packing.conv_weight(w, p.groups)]
    args += [scale.reshape(p.groups, -1), bias.reshape(p.groups, -1)]
    if p.reads_padding:
        args += list(packing.conv_border(p, w, layout))
    expected = ref.conv2d(xl, w, th, scale, bias, p, layout)
    g, og, ho, wo = p.groups, p.out_per_group, p.out_height, p.out_width
    shape = (1, g, og, ho, wo) if layout == "NCHW" else (1, ho, wo, g, og)
    return primfuncs.conv2d(p, layout, True, A76), args, [expected.reshape(shape)]


def _qk_case(p: AttentionParams):
    rng = _rng()
    q, k = (rng.standard_normal((p.batch, p.heads, p.tokens, p.dim)).astype(np.float32) for _ in range(2))
    return primfuncs.qk(p, A76), [ref.pack_rows(q), ref.pack_rows(k)], [ref.qk(q, k)]


def _av_case(p: AttentionParams):
    rng = _rng()
    levels = rng.integers(0, 4, (p.batch, p.heads, p.tokens, p.tokens)).astype(np.float32)
    v = rng.standard_normal((p.batch, p.heads, p.tokens, p.dim)).astype(np.float32)
    return primfuncs.av(p, A76), [ref.pack_levels(levels), ref.pack_tokens(v)], [ref.av(levels, v)]


QK_53_KEYS = AttentionParams(1, 2, 53, 192)  # keys padded to 27 two-lane vectors: 3 chunks of 9


CONV = dict(in_channels=40, out_channels=24, height=9, width=16, kernel=(3, 3), padding=(1, 1), groups=2)
CASES = {
    "dense_odd_pairs": lambda: _dense_case(10, 320, 6, 3),  # 5 x 3 pairs tile, 5 words
    "dense_even_pairs": lambda: _dense_case(12, 192, 24, 24),  # 3 words
    "pack_pool": lambda: _pack_pool_case(8, 200, 128, 4),
    "conv_nchw_rows": lambda: _conv_case("NCHW", **CONV),  # tile rows = output channels: row operand second
    "conv_nhwc": lambda: _conv_case("NHWC", **CONV),
    "av_one_row": lambda: _av_case(AttentionParams(1, 2, 53, 64)),  # 53 queries, a prime: 1-row tiles
    "av_two_rows": lambda: _av_case(AttentionParams(1, 2, 50, 64)),
}


def test_a76_attention_scores_sweep_a_padded_row_in_register_chunks_of_the_micro_kernel():
    """53 keys are padded to 54: the row's 27 vectors exceed the 16 accumulators, so they run in 3 chunks of 9 through
    the micro-kernel (not one scalar column at a time), each sum an int32 that converts to float a vector at a
    time."""
    func = primfuncs.qk(QK_53_KEYS, A76)
    assert str(func.attrs[MICRO_KERNEL_ATTR]) == "bhvit_neon_popcount_1x9x3_ab_int32"
    asm = tvm.tirx.build(tvm.IRModule({"main": func}), target=A76).inspect_source("asm")
    assert re.search(r"scvtf\tv\d+\.[24]s", asm) and not re.search(r"scvtf\ts\d+, x", asm)


@pytest.mark.parametrize("case", list(CASES))
def test_a76_kernels_use_the_micro_kernel(case):
    func = CASES[case]()[0]
    assert "llvm.aarch64.neon.udot" in func.script()  # the tile was tensorized
    asm = tvm.tirx.build(tvm.IRModule({"main": func}), target=A76).inspect_source("asm")
    ops = re.findall(r"^\s+(\w+)", asm, re.M)
    # every 128-bit cnt feeds a udot that accumulates (A·V's row sums count single words: cnt .8b)
    assert ops.count("udot") >= len(re.findall(r"\bcnt\tv\d+\.16b", asm)) > 0
    assert "uadalp" not in ops  # the int64 widening chain of LLVM's popcount is gone


def test_a76_tiles_have_rows_for_the_micro_kernel_and_x86_tiles_are_unchanged():
    cfg = select(A76)
    assert choose_tile(49, 512, cfg).mr == 7  # not 1 x 16: rows share the column operand's loads
    assert choose_tile(53, 512, cfg).mr == 1  # a prime: no choice
    x86 = select(Target({"kind": "llvm", "mcpu": "znver4"}))
    assert x86.micro_kernel is None and x86.acc_dtype == "int64" and x86.min_rows == 1


@pytest.mark.parametrize(
    "build, intrinsic",
    [
        (lambda: CASES["av_one_row"]()[0], "bhvit_neon_popcount_1x16x3_levels_int32"),  # 53 queries: 1 x 16 vectors
        (lambda: CASES["av_two_rows"]()[0], "bhvit_neon_popcount_2x8x3_levels_int32"),
        (
            lambda: primfuncs.dense_pack_pool(DenseParams(53, 512, 2048), 4, True, A76, 2048, True, True),
            "bhvit_neon_popcount_1x16x8_ab_int32",
        ),
    ],
    ids=["av_one_row", "av_two_rows", "pack_pool_one_row"],
)
def test_a76_tiles_of_one_row_and_attention_levels_take_the_micro_kernel(build, intrinsic):
    assert str(build().attrs[MICRO_KERNEL_ATTR]) == intrinsic


def test_a76_gemm_without_the_micro_kernel_sums_in_int64_unless_one_word():
    one_lane = primfuncs.dense(DenseParams(12, 192, 129), True, A76)  # 129 columns: a tile of one-lane vectors
    assert not tensorized(one_lane) and 'T.Cast("int64", T.popcount' in one_lane.script()
    one_word = primfuncs.dense(DenseParams(12, 64, 32), True, A76)
    assert not tensorized(one_word) and 'T.Cast("int32", T.popcount' in one_word.script()
    assert tensorized(primfuncs.dense(DenseParams(12, 128, 32), True, A76))


@pytest.fixture(scope="module")
def bench():
    """``scripts/bench_kernels.py`` as a module (its hot-loop finder and llvm-mca wrapper)."""
    spec = importlib.util.spec_from_file_location("bench_kernels", SCRIPTS / "bench_kernels.py")
    module = sys.modules["bench_kernels"] = importlib.util.module_from_spec(spec)  # for its dataclass
    spec.loader.exec_module(module)
    return module


def test_a76_hot_loop_is_eor_cnt_udot(bench):
    func = primfuncs.dense(DenseParams(196, 1024, 256), True, A76, 256, True)
    asm = tvm.tirx.build(tvm.IRModule({"main": func}), target=A76).inspect_source("asm")
    ops = [line.split()[0] for line in bench.hot_loop(asm)]
    assert ops.count("cnt") == ops.count("eor") == ops.count("udot") == 16  # 16 accumulators, 3 SIMD ops each
    assert not {"movi", "uadalp", "uaddlp", "str", "stp"} & set(ops)  # no re-zeroing, widening or spills


def test_a76_gemm_tasks_sweep_a_row_of_tiles_where_there_are_enough_rows(bench):
    """A task of the conv's parallel loop sweeps 14 tiles of 4 pixels with affine addresses: the hot loop divides
    nothing. A GEMM of fewer rows of tiles than MIN_TASKS (49 of 4 rows) runs every tile as a task."""
    conv = primfuncs.conv2d(Conv2dParams(1, 64, 64, 56, 56, (3, 3), padding=(1, 1), groups=4), "NCHW", True, A76)
    assert re.search(r"T\.parallel\(448\):\n\s+for n_0 in range\(14\)", conv.script())  # 4 groups x 56 rows x 2
    asm = tvm.tirx.build(tvm.IRModule({"main": conv}), target=A76).inspect_source("asm")
    ops = {line.split()[0] for line in bench.hot_loop(asm)}
    assert "cnt" in ops and not {"mul", "madd", "msub", "smull", "umull", "smulh", "umulh", "sdiv", "udiv"} & ops
    dense = primfuncs.dense(DenseParams(196, 256, 256), True, A76)
    assert "T.parallel(1568)" in dense.script()  # 49 x 32 tiles


def test_mca_counts_128_bits_per_vector_cnt_64_per_scalar_and_the_float_instructions(bench):
    body = [
        "eor v0.16b, v1.16b, v2.16b",
        "cnt v0.16b, v0.16b",
        "cnt v3.8b, v3.8b",
        "udot v4.4s, v0.16b, v5.16b",
        "fmla v6.4s, v7.4s, v8.4s",
        "scvtf v9.4s, v9.4s",
    ]
    row = bench.mca(body)
    assert (row["instructions"], row["cnt"], row["udot"], row["eor"], row["bits"], row["fp"]) == (6, 2, 1, 1, 192, 2)
    if "error" not in row:  # llvm-mca installed: the model is the one asked for
        assert row["cycles_per_iter"] > 0 and "error" in bench.mca(body, cpu="no-such-core")


@pytest.mark.qemu
@pytest.mark.skipif(
    not (ROOT / "usr/bin/python3.11").exists() or not shutil.which("qemu-aarch64-static"),
    reason=f"needs qemu-aarch64-static and an arm64 root at {ROOT} (BHVIT_PI_ROOT; built by scripts/qemu_setup.sh)",
)
@pytest.mark.skipif(not shutil.which("aarch64-linux-gnu-gcc"), reason="needs aarch64-linux-gnu-gcc")
def test_a76_kernels_match_the_oracles_under_qemu():
    (ROOT / "tmp").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=ROOT / "tmp"))
    try:
        arrays, expected = {}, {}
        for name, build in (CASES | {"qk_53_keys": lambda: _qk_case(QK_53_KEYS)}).items():
            func, args, outs = build()
            lib = tvm.tirx.build(tvm.IRModule({"main": func}), target=A76)
            lib.export_library(str(work / f"{name}.so"), cc="aarch64-linux-gnu-gcc")
            arrays |= {f"{name}/in{i}": np.ascontiguousarray(a) for i, a in enumerate(args)}
            arrays |= {f"{name}/out{i}": np.zeros(o.shape, o.dtype) for i, o in enumerate(outs)}
            expected[name] = outs
        np.savez(work / "cases.npz", **arrays)
        (work / "guest.py").write_text(GUEST)
        env = {"QEMU_CPU": "cortex-a76", "QEMU_PAGESIZE": "16384", "PYTHONPATH": str(SITE), "PATH": "/usr/bin:/bin"}
        env["TVM_FFI_DISABLE_TORCH_C_DLPACK"] = "1"
        qemu = shutil.which("qemu-aarch64-static")
        run = subprocess.run(
            [qemu, "-L", str(ROOT), str(ROOT / "usr/bin/python3.11"), str(work / "guest.py"), str(work), "/opt/site"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        for name, outs in expected.items():
            got = np.load(work / f"{name}.got.npz")
            for i, want in enumerate(outs):
                have = got[f"arr_{i}"]
                if want.dtype == np.uint64:
                    np.testing.assert_array_equal(have, want, err_msg=name)
                else:
                    np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
