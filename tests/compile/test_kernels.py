"""Binary kernels: every compute x schedule against the numpy oracles, codegen checks, Relax emitters."""

from __future__ import annotations

import functools
import platform
import re
import shutil

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
from bhvit.compile.kernels import packing, primfuncs, relax_emit  # noqa: E402
from bhvit.compile.kernels import reference as ref  # noqa: E402
from bhvit.compile.kernels.compute import bdense  # noqa: E402
from bhvit.compile.kernels.params import AttentionParams, Conv2dParams, DenseParams  # noqa: E402
from bhvit.compile.kernels.schedule import select  # noqa: E402
from bhvit.compile.kernels.schedule.register_transpose import PIPELINE  # noqa: E402
from tvm import relax  # noqa: E402
from tvm.target import Target, codegen  # noqa: E402

pytestmark = pytest.mark.tvm

HOST = Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": 2})
BASELINE = Target("llvm")  # no vector ISA named: the generic fallback schedule
ZNVER4 = Target({"kind": "llvm", "mcpu": "znver4"})
X86_64_V3 = Target({"kind": "llvm", "mcpu": "x86-64-v3"})  # AVX2, no AVX-512
A76 = Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]})
TARGETS = pytest.mark.parametrize("target", [HOST, BASELINE], ids=["host", "generic"])


@functools.cache
def has_aarch64_cc() -> bool:
    return shutil.which("aarch64-linux-gnu-gcc") is not None


def _run(func, args, out_shape, out_dtype, target):
    lib = tvm.tirx.build(tvm.IRModule({"main": func}), target=target, pipeline=PIPELINE)
    dev = tvm.cpu()
    out = tvm.runtime.empty(tuple(out_shape), out_dtype, dev)
    lib["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in args], out)
    return out.numpy()


def _signs(rng, *shape):
    return np.where(rng.random(shape) < 0.5, 1, -1).astype(np.int64)


def _close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@TARGETS
@pytest.mark.parametrize("shape", [(21, 150), (3, 64), (2, 3, 5, 100)])
def test_pack_rows_matches_reference(shape, target):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::7] = 0.0  # sign(0) = +1
    th = rng.standard_normal(shape[-1]).astype(np.float32)
    out = ref.pack_rows(x, th)
    np.testing.assert_array_equal(
        _run(primfuncs.pack_rows(shape, True, target), [x, th], out.shape, "uint64", target), out
    )


@pytest.mark.skipif(
    platform.machine() != "x86_64" or not codegen.target_has_features(["avx2"], HOST),
    reason="runs AVX2 code: needs an x86-64 host with AVX2",
)
@pytest.mark.parametrize("target", [HOST, X86_64_V3], ids=["host", "avx2"])
@pytest.mark.parametrize("with_threshold", [True, False], ids=["threshold", "plain"])
def test_x86_pack_reads_each_word_from_one_compare_mask(target, with_threshold):
    """Whole 64-bit words take the sign-word intrinsic (the compare's lanes read as one integer), bit-exact,
    zeros and negative zeros included (both are >= 0)."""
    shape = (6, 3, 128)
    func = primfuncs.pack_rows(shape, with_threshold, target)
    assert "pmovmskb" in func.script()
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::5], x.flat[1::9] = 0.0, -0.0
    th = rng.standard_normal(shape[-1]).astype(np.float32)
    th[::4] = 0.0
    out = ref.pack_rows(x, th if with_threshold else None)
    args = [x, th] if with_threshold else [x]
    np.testing.assert_array_equal(_run(func, args, out.shape, "uint64", target), out)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("channels,groups", [(64, 4), (192, 4), (200, 2)])
def test_pack_channels_matches_reference(layout, channels, groups):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, channels, 5, 6) if layout == "NCHW" else (2, 5, 6, channels)).astype(np.float32)
    th = rng.standard_normal(channels).astype(np.float32)
    out = ref.pack_channels(x, th, groups, layout)
    func = primfuncs.pack_channels(x.shape, True, groups, layout, HOST)
    np.testing.assert_array_equal(_run(func, [x, th], out.shape, "uint64", HOST), out)


@TARGETS
@pytest.mark.parametrize(
    "m,k,n,with_bias",
    [
        (21, 150, 24, True),
        (14, 64, 64, False),
        (49, 128, 40, True),
        (1, 300, 8, True),
        (9, 100, 53, True),
        (3, 64, 17, False),
    ],
)
def test_dense_matches_reference(m, k, n, with_bias, target):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w, th = _signs(rng, n, k), rng.standard_normal(k).astype(np.float32)
    scale, bias = rng.random(n).astype(np.float32), rng.standard_normal(n).astype(np.float32) if with_bias else None
    args = [ref.pack_rows(x, th), packing.dense_weight(w), scale, *([bias] if with_bias else [])]
    out = _run(primfuncs.dense(DenseParams(m, k, n), with_bias, target), args, (m, n), "float32", target)
    _close(out, ref.dense(x, w, th, scale, bias))
    ones = _run(
        primfuncs.dense(DenseParams(m, k, n), False, target),
        args[:2] + [np.ones(n, np.float32)],
        (m, n),
        "float32",
        target,
    )
    np.testing.assert_array_equal(ones, ref.dense(x, w, th, np.ones(n), None))  # integers: exact


@TARGETS
@pytest.mark.parametrize(
    "m,k,n,r,with_act",
    [
        (21, 150, 40, 20, True),
        (21, 150, 40, 40, True),
        (35, 100, 96, 32, True),
        (35, 100, 96, 32, False),
        (9, 70, 24, None, True),
    ],
)
def test_dense_residual_and_act_match_reference(m, k, n, r, with_act, target):
    rng = np.random.default_rng(6)
    x, w, th = (
        rng.standard_normal((m, k)).astype(np.float32),
        _signs(rng, n, k),
        rng.standard_normal(k).astype(np.float32),
    )
    scale, bias = rng.random(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    residual = None if r is None else (rng.standard_normal((m, r)) * 8).astype(np.float32)
    act = (
        np.stack([rng.standard_normal(n), rng.random(n), rng.standard_normal(n)]).astype(np.float32)
        if with_act
        else None
    )
    args = [ref.pack_rows(x, th), packing.dense_weight(w), scale, bias, *(t for t in (residual, act) if t is not None)]
    out = _run(primfuncs.dense(DenseParams(m, k, n), True, target, r, with_act), args, (m, n), "float32", target)
    expected = ref.dense(x, w, th, scale, bias, residual, act)
    assert (expected < 0).mean() > 0.2  # the RPReLU's negative branch is exercised
    _close(out, expected)


@TARGETS
@pytest.mark.parametrize(
    "m,k,n,r,ratio,with_bias",
    [
        (21, 24, 192, 24, 8, True),
        (35, 100, 128, 32, 4, False),
        (49, 150, 192, 64, 8, True),
        (7, 30, 64, 16, 2, True),
        (9, 40, 128, 128, 1, True),  # pool = a copy
        (5, 70, 128, 2, 64, True),  # one group per word
        (28, 300, 128, 64, 4, True),  # 5 words: a 7-row workspace tile, allocated once per task
        (56, 300, 1024, 64, 8, True),  # 8 x 16 tiles: 64 parallel tasks of 2 tiles each
    ],
)
def test_dense_pack_pool_matches_reference(m, k, n, r, ratio, with_bias, target):
    rng = np.random.default_rng(7)
    x, w, th = (
        rng.standard_normal((m, k)).astype(np.float32),
        _signs(rng, n, k),
        rng.standard_normal(k).astype(np.float32),
    )
    scale, next_th = rng.random(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    residual = (rng.standard_normal((m, r)) * 8).astype(np.float32)
    act = np.stack([rng.standard_normal(n), rng.random(n), rng.standard_normal(n)]).astype(np.float32)
    func = primfuncs.dense_pack_pool(DenseParams(m, k, n), ratio, with_bias, target, r, True, True)
    lib = tvm.tirx.build(tvm.IRModule({"main": func}), target=target, pipeline=PIPELINE)
    dev = tvm.cpu()
    packed, pooled = tvm.runtime.empty((m, n // 64), "uint64", dev), tvm.runtime.empty((m, n // ratio), "float32", dev)
    args = [
        ref.pack_rows(x, th),
        packing.dense_weight(w),
        scale,
        *([bias] if with_bias else []),
        residual,
        act,
        next_th,
    ]
    lib["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in args], packed, pooled)
    expected_packed, expected_pooled = ref.dense_pack_pool(x, w, th, scale, bias, residual, act, next_th, ratio)
    np.testing.assert_array_equal(packed.numpy(), expected_packed)
    _close(pooled.numpy(), expected_pooled)


def _float_tile(m: int, k: int, n: int, target) -> tuple[int, int]:
    """Rows and columns of the fused fc1's float tile once its (M, N) output is compacted."""
    passes = tvm.s_tir.transform
    func = primfuncs.dense_pack_pool(DenseParams(m, k, n), 8, True, target, k, True, True)
    mod = tvm.transform.Sequential(
        [
            passes.ConvertBlocksToOpaque(),
            passes.PlanAndUpdateBufferAllocationLocation(),
            passes.CompactBufferAllocation(),
        ]
    )(tvm.IRModule({"main": func}))
    rows, cols = map(int, re.search(r"out = T\.sblock_alloc_buffer\(\((\d+), (\d+)\)\)", mod.script()).groups())
    return rows, cols


def test_dense_pack_pool_keeps_its_float_output_in_a_stack_tile():
    """The (M, N) float output is compacted to one MR x 64 tile under TVM's stack-allocation limit."""
    rows, cols = _float_tile(3136, 192, 1536, ZNVER4)
    assert cols == 64 and 1 < rows and rows * cols * 4 < 1024


@pytest.mark.parametrize("target", [ZNVER4, A76], ids=["avx512", "a76"])
def test_dense_pack_pool_takes_more_rows_than_the_stack_holds_rather_than_one(target):
    """49 tokens: no divisor of 49 fits the stack but 1, so the tile takes 7 rows (a workspace) instead."""
    assert _float_tile(49, 1536, 6144, target) == (7, 64)


def test_dense_pack_pool_with_a_long_reduction_takes_a_workspace_tile_allocated_once_per_task():
    """x86, 12 reduction words (w=3 stage-2 fc1): 7 rows per tile though the float tile (1792 bytes) is then a
    workspace, which TVM allocates in the parallel loop's body: the loop runs over tasks of several tiles, so the
    allocation is once per task, ahead of the task's serial loop over its tiles. The A76 keeps its stack tile."""
    assert _float_tile(196, 768, 3072, ZNVER4) == (7, 64)
    rows, _ = _float_tile(196, 768, 3072, A76)
    assert rows * 64 * 4 < 1024
    func = primfuncs.dense_pack_pool(DenseParams(196, 768, 3072), 4, True, ZNVER4, 768, True, True)
    lower, _, _ = tvm.tirx.get_tir_pipeline(PIPELINE)
    llvm = Target({"kind": "llvm", "mcpu": "znver4"}, host="llvm")
    lowered = lower(tvm.tirx.transform.BindTarget(llvm)(tvm.IRModule({"main": func})))["main"].script()
    tasks = re.search(r"for \w+ in T\.parallel\((\d+)\):", lowered)
    tile = lowered.index("out = T.alloc_buffer((448,))")
    serial = re.compile(r"for \w+ in range\(").search(lowered, tile)
    assert tasks is not None and 64 <= int(tasks.group(1)) < 28 * 48  # tasks of several of the 28 x 48 tiles
    assert tasks.end() < tile < serial.start()  # allocated in the task, before its loop over tiles


@pytest.mark.parametrize(
    "target,pool_op,pack_op",
    [(ZNVER4, "vpermt2ps", "kunpckdq"), (X86_64_V3, "vhaddps", "vpmovmskb"), (A76, "faddp", None)],
    ids=["avx512", "avx2", "a76"],
)
def test_dense_pack_pool_pools_rows_by_a_shuffle_tree(target, pool_op, pack_op):
    """Each tile row's group means come from whole-row shuffles and adds, and on x86 its sign word from one
    compare mask (the sign-word intrinsic took the pack); a stack tile (48 rows: 2 or 3 per tile) is written in
    row-wide vectors. (A 49-row fc1 takes a 7-row workspace tile instead, written in its NR x lanes vectors.)"""
    func = primfuncs.dense_pack_pool(DenseParams(48, 192, 256), 8, True, target, 32, True, True)
    script, asm = func.script(), _asm(func, target)
    assert "T.Shuffle" in script and pool_op in asm
    # the float tile written in NR x lanes vectors (x86 used 8), so the pack's and pool's wide loads forward
    epilogue = re.search(r"for (\w+) in T\.vectorized\((\d+)\):\s+with T\.sblock\(\"out\"\)", script)
    assert epilogue is not None and int(epilogue.group(2)) > 8
    assert (pack_op is not None) == ("pmovmskb" in script)
    if pack_op is not None:
        assert pack_op in asm


def test_x86_dense_epilogue_loads_the_tiled_residual_as_vectors():
    """R = 64 is a multiple of the tile's NR x 8 lanes: n % R folds into the vector index (no per-lane loads)."""
    ll = tvm.tirx.build(
        tvm.IRModule({"main": primfuncs.dense(DenseParams(28, 512, 128), True, ZNVER4, 64, True)}), target=ZNVER4
    ).inspect_source("ll")
    assert "load <8 x float>" in ll and "load float," not in ll and "select <8 x i1>" in ll


CONVS = {
    "g4_d1_c64": dict(
        batch=2, in_channels=64, out_channels=64, height=7, width=7, kernel=(3, 3), padding=(1, 1), groups=4
    ),
    "g4_d3_c192": dict(
        batch=1,
        in_channels=192,
        out_channels=192,
        height=9,
        width=11,
        kernel=(3, 3),
        padding=(3, 3),
        dilation=(3, 3),
        groups=4,
    ),
    "g4_d5_7x7": dict(
        batch=2,
        in_channels=64,
        out_channels=64,
        height=7,
        width=7,
        kernel=(3, 3),
        padding=(5, 5),
        dilation=(5, 5),
        groups=4,
    ),
    "down_2x2_s2": dict(batch=2, in_channels=12, out_channels=8, height=8, width=10, kernel=(2, 2), stride=(2, 2)),
    # NCHW, rows not whole vectors: tiles of pixels x channels, 4 pixels (a power of two) on AVX-512, whose stores
    # along the rows go through a register transpose
    "g4_w12": dict(
        batch=1, in_channels=64, out_channels=64, height=6, width=12, kernel=(3, 3), padding=(1, 1), groups=4
    ),
    "rows_g4_d3_c192": dict(
        batch=1,
        in_channels=192,
        out_channels=192,
        height=5,
        width=16,
        kernel=(3, 3),
        padding=(3, 3),
        dilation=(3, 3),
        groups=4,
    ),  # NCHW: 16-wide rows are the vector axis
    "rows_down_c128": dict(batch=1, in_channels=128, out_channels=32, height=4, width=16, kernel=(2, 2), stride=(2, 2)),
    "s2_p1_c100": dict(
        batch=1,
        in_channels=100,
        out_channels=24,
        height=9,
        width=8,
        kernel=(3, 3),
        stride=(2, 2),
        padding=(1, 1),
        groups=2,
    ),
}


@TARGETS
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", list(CONVS))
def test_conv2d_matches_reference(case, layout, target):
    p = Conv2dParams(**CONVS[case])
    rng = np.random.default_rng(3)
    x = rng.standard_normal((p.batch, p.in_channels, p.height, p.width)).astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w, th = (
        _signs(rng, p.out_channels, p.in_per_group, *p.kernel),
        rng.standard_normal(p.in_channels).astype(np.float32),
    )
    scale = np.ones(p.out_channels, np.float32)
    xp = _run(
        primfuncs.pack_channels(x.shape, True, p.groups, layout, target),
        [x, th],
        ref.pack_channels(x, th, p.groups, layout).shape,
        "uint64",
        target,
    )
    np.testing.assert_array_equal(xp, ref.pack_channels(x, th, p.groups, layout))
    args = [xp, packing.conv_weight(w, p.groups), scale.reshape(p.groups, -1)]
    if p.reads_padding:
        args += list(packing.conv_border(p, w, layout))
    expected = ref.conv2d(x, w, th, scale, None, p, layout)
    g, og, ho, wo = p.groups, p.out_per_group, p.out_height, p.out_width
    out5 = (p.batch, g, og, ho, wo) if layout == "NCHW" else (p.batch, ho, wo, g, og)
    out = _run(primfuncs.conv2d(p, layout, False, target), args, out5, "float32", target)
    np.testing.assert_array_equal(out.reshape(expected.shape), expected)


def test_x86_nchw_conv_tile_stores_its_rows_through_a_register_transpose():
    """An NCHW conv whose rows are not whole vectors tiles pixels x channels: its output rows are the tile's rows.
    With AVX-512 the tile takes 4 pixels (a power of two) and writes them transposed (contiguous runs of 4 floats
    per channel); built without the pass, the same tile stores its vectors lane by lane (scalar ``vmovss``)."""
    from bhvit.compile.kernels.schedule.generic import choose_tile
    from bhvit.compile.kernels.schedule.x86 import AVX512_VPOPCNT

    p = Conv2dParams(**CONVS["g4_w12"])
    assert choose_tile(12, 16, AVX512_VPOPCNT, pow2_rows=True).mr == 4
    func = primfuncs.conv2d(p, "NCHW", False, ZNVER4)
    plain, transposed = (
        tvm.tirx.build(tvm.IRModule({"main": func}), target=ZNVER4, pipeline=pipeline).inspect_source("asm")
        for pipeline in ("default", PIPELINE)
    )
    assert re.search(r"\tvmovss\t%xmm\d+, ", plain)
    assert not re.search(r"\tvmovss\t%xmm\d+, ", transposed)


def test_conv_border_corrections_are_int16_and_refuse_overflow():
    p = Conv2dParams(1, 8, 8, 6, 6, (3, 3), padding=(1, 1))
    row_class, border = packing.conv_border(p, np.ones((8, 8, 3, 3)))
    # the constant term: 8 * 9 taps (inside), plus 8 * 5 added back at a corner output (5 of its 9 taps padded)
    assert border.dtype == np.int16 and border.min() == 8 * 9 and border.max() == 8 * 9 + 8 * 5
    wide = Conv2dParams(1, 2000, 1, 1, 1, (3, 3), padding=(1, 1))  # 2000 * 9 + 2000 * 8 (8 of 9 padded) > 32767
    with pytest.raises(ValueError, match="do not fit int16"):
        packing.conv_border(wide, np.ones((1, 2000, 3, 3)))


@TARGETS
@pytest.mark.parametrize("shape", [(2, 3, 53, 64), (1, 2, 50, 100)])
def test_attention_matches_reference(shape, target):
    p = AttentionParams(*shape)
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    levels = rng.integers(0, 4, (*shape[:3], shape[2])).astype(np.float32)
    scores = _run(
        primfuncs.qk(p, target), [ref.pack_rows(q), ref.pack_rows(k)], (*shape[:3], shape[2]), "float32", target
    )
    np.testing.assert_array_equal(scores, ref.qk(q, k))
    masks = _run(primfuncs.pack_levels(p, target), [levels], ref.pack_levels(levels).shape, "uint64", target)
    vp = _run(primfuncs.pack_tokens(p, target), [v], ref.pack_tokens(v).shape, "uint64", target)
    np.testing.assert_array_equal(masks, ref.pack_levels(levels))
    np.testing.assert_array_equal(vp, ref.pack_tokens(v))
    np.testing.assert_array_equal(
        _run(primfuncs.av(p, target), [masks, vp], shape, "float32", target), ref.av(levels, v)
    )


@TARGETS
@pytest.mark.parametrize("along_tokens", [False, True], ids=["q_k", "v"])
@pytest.mark.parametrize("shifted", [True, False], ids=["shift", "plain"])
def test_head_split_packs_read_the_token_major_tensor(along_tokens, shifted, target):
    """q/k (along the head dim) and v (along the tokens) packed straight from the (B, n, H*d) tokens, with the
    shift added in the pack: the words of ``(x + shift)`` split into heads and transposed."""
    p = AttentionParams(2, 3, 53, 128)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((p.batch, p.tokens, p.heads * p.dim)).astype(np.float32)
    shift = rng.standard_normal(p.heads * p.dim).astype(np.float32)
    heads = (x + shift if shifted else x).reshape(p.batch, p.tokens, p.heads, p.dim).transpose(0, 2, 1, 3)
    expected = ref.pack_tokens(heads) if along_tokens else ref.pack_rows(heads)
    func = primfuncs.pack_heads(p, shifted, along_tokens, target)
    got = _run(func, [x, *([shift] if shifted else [])], expected.shape, "uint64", target)
    np.testing.assert_array_equal(got, expected)


def test_x86_gemm_off_the_vector_width_tiles_whole_rows():
    """53 keys: each row is 6 whole int64x8 vectors and one 5-lane vector (not 53 scalar columns)."""
    func = primfuncs.qk(AttentionParams(1, 2, 53, 128), ZNVER4)
    assert "T.vectorized" in func.script()
    ll = tvm.tirx.build(tvm.IRModule({"main": func}), target=ZNVER4).inspect_source("ll")
    assert "@llvm.ctpop.v8i64" in ll and "@llvm.ctpop.v5i64" in ll


def _asm(func, target) -> str:
    return tvm.tirx.build(tvm.IRModule({"main": func}), target=target).inspect_source("asm")


def test_schedule_rules_pick_by_target():
    assert select(ZNVER4).name == "x86-avx512-vpopcntdq"
    assert select(Target({"kind": "llvm", "mcpu": "x86-64-v3"})).name == "x86-avx2"
    assert select(A76).name == "rpi5-neon"
    assert select(BASELINE).name == "generic"


def test_x86_znver4_build_emits_vpopcntq():
    asm = _asm(primfuncs.dense(DenseParams(28, 512, 64), True, ZNVER4), ZNVER4)
    assert "vpopcntq" in asm and "zmm" in asm


@pytest.mark.parametrize(
    "func",
    [
        lambda t: primfuncs.dense(DenseParams(28, 512, 64), True, t),
        lambda t: primfuncs.dense_pack_pool(DenseParams(14, 192, 128), 8, True, t, 64, True, True),
        lambda t: primfuncs.conv2d(Conv2dParams(**CONVS["g4_d3_c192"]), "NCHW", True, t),
    ],
    ids=["dense", "fc1", "conv"],
)
def test_x86_forms_dot_products_in_float(func):
    """x86 converts the int64 popcount sums first and forms K - 2 * t as a float multiply-add: no int64 subtract is
    left (exact either way: the reference tests compare the outputs)."""
    asm = _asm(func(ZNVER4), ZNVER4)
    assert "vcvtqq2ps" in asm and "vpsubq" not in asm


def test_float_dot_products_refuse_sums_float32_cannot_hold_exactly():
    with pytest.raises(ValueError, match="not exact in float32"):
        bdense.bdense(DenseParams(1, 2**24, 64), float_dot=True)
    bdense.bdense(DenseParams(1, 2**24, 64))  # the integer form is exact


def test_a76_forms_dot_products_in_integers():
    """The A76 keeps K - 2 * sums on its int32 sums (shorter there): a dense without bias or activation has no float
    add or subtract at all (the float form added 8 of each)."""
    asm = _asm(primfuncs.dense(DenseParams(28, 512, 64), False, A76), A76)
    ops = re.findall(r"^\s+(\w+)", asm, re.M)
    assert "scvtf" in ops and not {"fadd", "fsub"} & set(ops)


def test_aarch64_build_emits_cnt_and_udot():
    asm = _asm(primfuncs.dense(DenseParams(28, 512, 64), True, A76), A76)
    assert "\tcnt\t" in asm and "\tudot\t" in asm  # the NEON micro-kernel: test_neon_kernels.py


@pytest.mark.skipif(
    not has_aarch64_cc(), reason="aarch64-linux-gnu-gcc not installed (apt-get install gcc-aarch64-linux-gnu)"
)
def test_aarch64_cross_export_links(tmp_path):
    lib = tvm.tirx.build(tvm.IRModule({"main": primfuncs.dense(DenseParams(28, 512, 64), True, A76)}), target=A76)
    path = tmp_path / "bdense_a76.so"
    lib.export_library(str(path), cc="aarch64-linux-gnu-gcc")
    assert path.read_bytes()[:4] == b"\x7fELF" and path.read_bytes()[18] == 183  # e_machine = EM_AARCH64


def test_relax_emitters_run_in_vm():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 100)).astype(np.float32)
    dw, dth, dscale, dbias = (
        _signs(rng, 24, 100),
        rng.standard_normal(100).astype(np.float32),
        rng.random(24).astype(np.float32),
        rng.random(24).astype(np.float32),
    )
    c = rng.standard_normal((2, 64, 7, 7)).astype(np.float32)
    cw, cth, cscale, cbias = (
        _signs(rng, 64, 16, 3, 3),
        rng.standard_normal(64).astype(np.float32),
        rng.random(64).astype(np.float32),
        rng.random(64).astype(np.float32),
    )
    d = rng.standard_normal((1, 12, 8, 8)).astype(np.float32)
    dsw = _signs(rng, 24, 12, 2, 2)
    q, k = (rng.standard_normal((1, 2, 53, 64)).astype(np.float32) for _ in range(2))
    levels = rng.integers(0, 4, (1, 2, 53, 53)).astype(np.float32)
    res, act = rng.standard_normal((2, 5, 12)).astype(np.float32), rng.standard_normal((3, 24)).astype(np.float32)
    inputs = {"x": x, "c": c, "d": d, "q": q, "k": k, "levels": levels, "res": res}
    params = {name: relax.Var(name, relax.TensorType(a.shape, "float32")) for name, a in inputs.items()}
    bb = relax.BlockBuilder()
    with bb.function("main", list(params.values())):
        with bb.dataflow():
            outs = [
                relax_emit.emit_binary_dense(
                    bb, params["x"], weight_signs=dw, threshold=dth, scale=dscale, bias=dbias, target=HOST
                ),
                relax_emit.emit_binary_conv2d(
                    bb,
                    params["c"],
                    weight_signs=cw,
                    threshold=cth,
                    scale=cscale,
                    bias=cbias,
                    stride=1,
                    padding=5,
                    dilation=5,
                    groups=4,
                    target=HOST,
                ),
                relax_emit.emit_binary_conv2d(
                    bb,
                    params["d"],
                    weight_signs=dsw,
                    threshold=None,
                    scale=np.ones(24),
                    bias=None,
                    stride=2,
                    padding=0,
                    dilation=1,
                    groups=1,
                    target=HOST,
                ),
                relax_emit.emit_binary_qk(bb, params["q"], params["k"], target=HOST),
                relax_emit.emit_binary_av(bb, params["levels"], params["k"], target=HOST),
                relax_emit.emit_binary_dense(
                    bb,
                    params["x"],
                    weight_signs=dw,
                    threshold=dth,
                    scale=dscale,
                    bias=dbias,
                    target=HOST,
                    residual=params["res"],
                    act=act,
                ),
            ]
            result = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(result)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), target=HOST), tvm.cpu())
    got = [t.numpy() for t in vm["main"](*[tvm.runtime.tensor(a) for a in inputs.values()])]
    conv = Conv2dParams(2, 64, 64, 7, 7, (3, 3), padding=(5, 5), dilation=(5, 5), groups=4)
    down = Conv2dParams(1, 12, 24, 8, 8, (2, 2), stride=(2, 2))
    _close(got[0], ref.dense(x, dw, dth, dscale, dbias))
    _close(got[1], ref.conv2d(c, cw, cth, cscale, cbias, conv))
    np.testing.assert_array_equal(got[2], ref.conv2d(d, dsw, None, np.ones(24), None, down))
    np.testing.assert_array_equal(got[3], ref.qk(q, k))
    np.testing.assert_array_equal(got[4], ref.av(levels, k))
    _close(got[5], ref.dense(x, dw, dth, dscale, dbias, res, act))  # same m x k x n as got[0]: a distinct kernel


@pytest.mark.parametrize("k,ratio", [(24, 8), (32, 4), (16, 2)], ids=["fused-r8", "fused-r4", "unfused-n32"])
def test_relax_mlp_matches_reference(k, ratio):
    """fc2(h, pool(h)) with h = fc1(z, z): fc1 writes fc2's packed input and pool(h) when N = ratio * K is a multiple
    of 64, else h is materialised (N = 32)."""
    rng = np.random.default_rng(8)
    n, z = k * ratio, rng.standard_normal((2, 7, k)).astype(np.float32)

    def layer(n_out, n_in):
        act = np.stack([rng.standard_normal(n_out), rng.random(n_out), rng.standard_normal(n_out)]).astype(np.float32)
        return relax_emit.DenseWeights(
            _signs(rng, n_out, n_in),
            rng.standard_normal(n_in).astype(np.float32),
            rng.random(n_out).astype(np.float32),
            rng.standard_normal(n_out).astype(np.float32),
            act,
        )

    fc1, fc2 = layer(n, k), layer(k, n)
    bb = relax.BlockBuilder()
    param = relax.Var("z", relax.TensorType(z.shape, "float32"))
    with bb.function("main", [param]):
        with bb.dataflow():
            out = bb.emit_output(relax_emit.emit_binary_mlp(bb, param, fc1=fc1, fc2=fc2, ratio=ratio, target=HOST))
        bb.emit_func_output(out)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), target=HOST), tvm.cpu())
    h = ref.dense(z, *fc1[:4], z, fc1.act)
    expected = ref.dense(h, *fc2[:4], h.reshape(2, 7, k, ratio).mean(-1), fc2.act)
    _close(vm["main"](tvm.runtime.tensor(z)).numpy(), expected)


def _popcount_gemm(annotate: bool):
    """A popcount GEMM written with other lambda argument names than the kit's computes (i, j, r)."""
    from bhvit.compile.kernels.blocks import ACC, OUT, tile_axes
    from tvm import te, tirx

    a = te.placeholder((28, 2), "uint64", name="a")
    w = te.placeholder((2, 64), "uint64", name="w")
    r = te.reduce_axis((0, 2), name="r")
    attrs = tile_axes(0, 1) if annotate else None
    acc = te.compute(
        (28, 64), lambda i, j: te.sum(tirx.popcount(a[i, r] ^ w[r, j]).astype("int64"), axis=r), name=ACC, attrs=attrs
    )
    out = te.compute((28, 64), lambda i, j: (128 - 2 * acc[i, j]).astype("float32"), name=OUT, attrs=attrs)
    return te.create_prim_func([a, w, out])


def test_schedules_find_tile_axes_by_annotation_not_by_iterator_names():
    from bhvit.compile.kernels.schedule import generic

    func = generic.schedule(_popcount_gemm(annotate=True), select(HOST))["main"]
    text = func.script()
    assert "T.parallel" in text and "T.vectorized" in text
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, (28, 2), dtype=np.uint64)
    w = rng.integers(0, 2**63, (2, 64), dtype=np.uint64)
    pop = np.vectorize(lambda v: bin(int(v)).count("1"))
    expected = 128 - 2 * pop(a[:, None, :] ^ w.T[None, :, :]).sum(-1)
    np.testing.assert_array_equal(_run(func, [a, w], (28, 64), "float32", HOST), expected.astype(np.float32))


def test_a_gemm_without_tile_annotation_is_refused_not_left_unscheduled():
    from bhvit.compile.kernels.schedule import generic

    with pytest.raises(KeyError):
        generic.schedule(_popcount_gemm(annotate=False), select(HOST))
