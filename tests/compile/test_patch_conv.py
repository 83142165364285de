"""The FP32 patch conv (FP conv with kernel = stride, a patch matmul): emitted kernel against torch's conv, its tile."""

from __future__ import annotations

import re

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
import torch  # noqa: E402
from bhvit.compile.kernels import primfuncs, relax_emit  # noqa: E402
from bhvit.compile.kernels.params import PatchConvParams  # noqa: E402
from bhvit.compile.kernels.schedule.patch_conv import patch_tile  # noqa: E402
from bhvit.compile.targets import resolve_target  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from tvm import relax  # noqa: E402
from tvm.target import Target  # noqa: E402

pytestmark = pytest.mark.tvm

# "generic": no vector ISA named, the fallback tile (128-bit vectors)
TARGETS = {
    "host": resolve_target("host").tvm_target(),
    "generic": Target("llvm"),
    "avx512": Target({"kind": "llvm", "mcpu": "znver4"}),
    "neon": Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]}),
}


def _conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, k: int) -> np.ndarray:
    """torch's strided conv (the oracle) with the (K, N) weight."""
    w = torch.from_numpy(weight).t().reshape(weight.shape[1], x.shape[1], k, k)
    return F.conv2d(torch.from_numpy(x), w, None if bias is None else torch.from_numpy(bias), stride=k).numpy()


@pytest.mark.parametrize("target", ["host", "generic"])
@pytest.mark.parametrize(
    "shape,k,n,with_bias",
    [((2, 5, 13, 11), 3, 24, True), ((1, 12, 8, 8), 2, 48, False), ((1, 3, 20, 28), 4, 40, True)],
    ids=["odd-map-border", "no-bias", "stem-like"],
)
def test_emitted_patch_conv_equals_the_strided_conv(shape, k, n, with_bias, target):
    target = TARGETS[target]
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    weight = rng.standard_normal((shape[1] * k * k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    var = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [var]):
        with bb.dataflow():
            y = bb.emit_output(relax_emit.emit_patch_conv(bb, var, weight=weight, bias=bias, k=k, target=target))
        bb.emit_func_output(y)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), target=target), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = _conv(x, weight, bias, k)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("target,lanes", [("avx512", 16), ("neon", 4), ("generic", 4)])
def test_downsample_tile_is_a_register_tile_of_full_vectors(target, lanes):
    """BHViT-Tiny w=3's first FP downsampling: MR x NR vectors of the target's float32 width, summed in a stack
    tile (under TVM's 1024-byte stack-allocation limit, so it stays in registers), vectorised, parallel."""
    p = PatchConvParams(1, 192, 56, 56, 2, 384)
    tile = patch_tile(p, TARGETS[target])
    assert tile.vl == lanes and tile.mr * tile.nr >= 7 and 28 % tile.mr == 0 and p.n % (tile.nr * tile.vl) == 0
    func = primfuncs.patch_conv(p, tile, with_bias=False)
    passes = tvm.s_tir.transform
    mod = tvm.transform.Sequential(
        [
            passes.ConvertBlocksToOpaque(),
            passes.PlanAndUpdateBufferAllocationLocation(),
            passes.CompactBufferAllocation(),
        ]
    )(tvm.IRModule({"main": func}))
    text = mod.script()
    shape = tuple(int(v) for v in re.search(r"acc = T\.sblock_alloc_buffer\(\(([\d, ]+)\)\)", text)[1].split(","))
    assert shape == (1, 1, tile.mr, tile.nr * tile.vl) and 4 * np.prod(shape) < 1024
    assert "T.parallel" in text and "T.vectorized" in text


def test_znver4_inner_loop_is_zmm_fmas_on_register_accumulators():
    """The 7 x 2-vector tile compiles to AVX-512 FMAs on 14 accumulator registers, none spilled to the stack."""
    p = PatchConvParams(1, 192, 56, 56, 2, 384)
    target = TARGETS["avx512"]
    lib = tvm.tirx.build(tvm.IRModule({"main": primfuncs.patch_conv(p, patch_tile(p, target), False)}), target=target)
    asm = lib.inspect_source("asm")
    fmas = re.findall(r"vfmadd231ps\s+%zmm\d+, %zmm\d+, %zmm(\d+)", asm)
    assert len(set(fmas)) == 14
    assert not re.search(r"vmovups\s+%zmm\d+, -?\d*\(%rsp", asm)
