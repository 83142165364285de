"""The FP32 stencil add (a block's residual, shift branches and MLP output): emitted kernel against the torch op."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
import torch  # noqa: E402
from bhvit.compile.kernels import relax_emit  # noqa: E402
from bhvit.compile.kernels.params import StencilParams  # noqa: E402
from bhvit.compile.kernels.schedule.register_transpose import PIPELINE  # noqa: E402
from bhvit.compile.kernels.schedule.stencil_add import row_vector, token_tile  # noqa: E402
from bhvit.compile.targets import resolve_target  # noqa: E402
from bhvit.models.layers.deploy_ops import stencil_add_eager  # noqa: E402
from tvm import relax  # noqa: E402
from tvm.target import Target  # noqa: E402

pytestmark = pytest.mark.tvm

TARGETS = {
    "host": resolve_target("host").tvm_target(),
    "avx512": Target({"kind": "llvm", "mcpu": "znver4"}),
    "generic": Target("llvm"),
    "neon": Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]}),
}


def _run(x, tokens, taps, token_scale, bias, target):
    xv = relax.Var("x", relax.TensorType(x.shape, "float32"))
    tv = relax.Var("tokens", relax.TensorType(tokens.shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [xv, tv]):
        with bb.dataflow():
            y = relax_emit.emit_stencil_add(bb, xv, tv, taps=taps, token_scale=token_scale, bias=bias, target=target)
            y = bb.emit_output(y)
        bb.emit_func_output(y)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), target=target, tir_pipeline=PIPELINE), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(tokens)).numpy()


@pytest.mark.parametrize("target", ["host", "generic"])
@pytest.mark.parametrize(
    "shape,reach",
    [
        ((1, 16, 56, 56), 2),
        ((2, 8, 7, 7), 2),
        ((1, 12, 5, 3), 1),
        ((1, 8, 2, 2), 2),
        ((1, 4, 1, 1), 2),
        ((1, 8, 6, 9), 0),
        ((2, 8, 14, 14), 2),
        ((1, 8, 28, 28), 1),
    ],
    ids=["stage0", "batch2-7x7", "5x3", "2x2-wraps-twice", "1x1", "reach0", "batch2-tiled", "tile-rows-under-lanes"],
)
def test_emitted_stencil_add_equals_the_op(shape, reach, target):
    rng = np.random.default_rng(5)
    b, c, h, w = shape
    x = rng.standard_normal(shape).astype(np.float32)
    tokens = rng.standard_normal((b, h * w, c)).astype(np.float32)
    taps = rng.standard_normal((c, 4 * reach + 1)).astype(np.float32)
    token_scale, bias = rng.standard_normal((2, c)).astype(np.float32)
    got = _run(x, tokens, taps, token_scale, bias, TARGETS[target])
    expected = stencil_add_eager(*map(torch.from_numpy, (x, tokens, taps, token_scale, bias))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_emit_refuses_tokens_that_do_not_match_the_map():
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType((1, 8, 4, 4), "float32"))
    tv = relax.Var("tokens", relax.TensorType((1, 15, 8), "float32"))
    with pytest.raises(ValueError, match="disagree"):
        relax_emit.emit_stencil_add(
            bb, xv, tv, taps=np.zeros((8, 9)), token_scale=np.zeros(8), bias=np.zeros(8), target=TARGETS["host"]
        )


@pytest.mark.parametrize(
    "target,width,lanes",
    [("avx512", 56, 56), ("avx512", 14, 14), ("generic", 56, 4), ("neon", 28, 4), ("neon", 14, 14)],
)
def test_rows_run_as_whole_vectors_or_power_of_two_pieces(target, width, lanes):
    """A row of up to four vectors' worth of float32 lanes is one vector (LLVM splits it into registers: 16 lanes
    with AVX-512, 4 on NEON and plain x86-64), a longer one is cut into pieces of a power-of-two divisor of its
    width, at most one register wide."""
    assert row_vector(StencilParams(1, 8, width, width, 2), TARGETS[target]) == lanes


def test_neon_build_vectorises_the_rows():
    """The aarch64 kernel (cross-built here; it runs under the emulator in test_qemu) has NEON float vectors."""
    target = TARGETS["neon"]
    from bhvit.compile.kernels import primfuncs

    func = primfuncs.stencil_add(StencilParams(1, 192, 56, 56, 2), target)
    lib = tvm.tirx.build(tvm.IRModule({"main": func}), target=target)
    asm = lib.inspect_source("asm")
    assert "fmla" in asm and ".4s" in asm


@pytest.mark.parametrize("name", list(TARGETS))
@pytest.mark.parametrize("size, fused, tasks", [(7, "b_c", 32), (28, "b_c_h", 32 * 28)])
def test_threads_split_the_map_by_channels(name, size, fused, tasks):
    """The sum's parallel loop runs over channels (a 7x7 map with its borders fits the stack buffer) or over (channel,
    row) with channels outer, so each thread writes a range of channels, as the NCHW kernels after it read them (split
    by rows, half of their input was in the other core's cache); the token term, where it has a tile, is a parallel
    pass of its own before it. TVM names a fused loop after its loops, in order."""
    from bhvit.compile.kernels import primfuncs

    text = primfuncs.stencil_add(StencilParams(1, 32, size, size, 2), TARGETS[name]).script()
    assert f"for {fused}_fused in T.parallel({tasks}):" in text
    assert text.count("T.parallel(") == (1 if size == 7 else 2)  # 28x28's 784 positions have a token tile


@pytest.mark.parametrize("size, tile", [(56, (16, 16)), (28, (16, 16)), (14, (4, 4)), (7, None)])
def test_the_token_term_is_transposed_in_registers(size, tile):
    """The token term runs first, as a pass of its own over tiles of channels x positions (a power of two dividing
    the positions, up to a vector: 196 = 4 x 49), transposed in registers by the TIR pass: with AVX-512 no lane is
    inserted one by one, as the same kernel does built without the pass. 7x7 (49 positions) has no such tile: its
    tokens are gathered in the sum."""
    from bhvit.compile.kernels import primfuncs

    p = StencilParams(1, 192, size, size, 2)
    assert token_tile(p, TARGETS["avx512"]) == tile
    if tile is None:
        return
    func = primfuncs.stencil_add(p, TARGETS["avx512"])
    assert func.script().count("T.parallel(") == 2  # the token term's pass, then the sum's
    plain, shuffled = (
        tvm.tirx.build(tvm.IRModule({"main": func}), target=TARGETS["avx512"], pipeline=pipeline).inspect_source("asm")
        for pipeline in ("default", PIPELINE)
    )
    assert "vinsertps" in plain
    assert "vinsertps" not in shuffled
