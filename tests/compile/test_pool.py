"""The FP32 mean and max pools with kernel = stride (the downsampling shortcut, the attention's global tokens):
emitted kernel and lowering against torch."""

from __future__ import annotations

import re

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
import torch  # noqa: E402
from bhvit.compile.kernels import primfuncs, relax_emit  # noqa: E402
from bhvit.compile.kernels import reference as ref  # noqa: E402
from bhvit.compile.kernels.params import PoolParams  # noqa: E402
from bhvit.compile.lower import to_relax  # noqa: E402
from bhvit.compile.targets import resolve_target  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from tvm import relax  # noqa: E402
from tvm.target import Target  # noqa: E402

pytestmark = pytest.mark.tvm

HOST = resolve_target("host").tvm_target()
TARGETS = {"host": HOST, "generic": Target("llvm")}
ZNVER4 = Target({"kind": "llvm", "mcpu": "znver4"})
A76 = Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]})


def _run(mod: tvm.IRModule, x: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, target=HOST), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _torch_pool(x: np.ndarray, k: int, padding: int, reduce: str) -> np.ndarray:
    pool = F.max_pool2d if reduce == "max" else F.avg_pool2d
    return pool(torch.from_numpy(x), k, k, padding).numpy()


@pytest.mark.parametrize("target", ["host", "generic"])
@pytest.mark.parametrize("reduce", ["mean", "max"])
@pytest.mark.parametrize(
    "shape,k,padding",
    [
        ((1, 24, 56, 56), 2, 0),
        ((2, 5, 10, 7), 3, 0),
        ((1, 4, 6, 6), 6, 0),
        ((1, 16, 14, 14), 7, 3),
        ((2, 3, 10, 7), 3, 1),
        ((1, 2, 9, 9), 4, 2),
        ((1, 16, 7, 7), 7, 3),
    ],
    ids=[
        "stage0-like",
        "partial-windows",
        "one-column",
        "attention-like",
        "padded-partial",
        "padded-one-side",
        "padded-one-window",
    ],
)
def test_emitted_pool_equals_torch_pool(shape, k, padding, reduce, target):
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    var = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [var]):
        with bb.dataflow():
            y = bb.emit_output(relax_emit.emit_pool(bb, var, k=k, padding=padding, reduce=reduce))
        bb.emit_func_output(y)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), target=TARGETS[target]), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = _torch_pool(x, k, padding, reduce)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ref.pool(x, k, padding, reduce), expected, rtol=1e-6, atol=1e-6)


def test_pool_params_refuse_what_torch_refuses():
    with pytest.raises(ValueError, match="padding"):
        PoolParams(1, 4, 14, 14, 7, 4)
    with pytest.raises(ValueError, match="reduce"):
        PoolParams(1, 4, 14, 14, 7, 3, "sum")


def test_rows_are_added_as_vectors_and_deinterleaved_by_shuffles():
    """Each output row: whole-row vector loads and lane shuffles, not one scalar load and insert per lane."""
    func = primfuncs.pool(PoolParams(1, 8, 56, 56, 2))
    assert "T.Shuffle" in func.script()
    asm = tvm.tirx.build(tvm.IRModule({"main": func}), target=ZNVER4).inspect_source("asm")
    ops = [line.split()[0] for line in asm.splitlines() if line.startswith("\tv")]
    assert ops.count("vpermt2ps") + ops.count("vpermi2ps") >= 2
    assert ops.count("vinsertps") == 0
    neon = tvm.tirx.build(tvm.IRModule({"main": func}), target=A76).inspect_source("asm")
    assert "\tuzp1\t" in neon or "\tld2\t" in neon


def test_padded_pool_copies_its_border_in_vector_pieces():
    """The bordered copy of a channel is cut where the border starts: a 14x14 map padded by 3 (the windows read
    bordered rows and columns 0-13, of which 0-2 are border) copies in four pieces, the top border's first 3 and
    other 11 columns, then the map rows' first 3 and other 11, each one vector loop."""
    func = primfuncs.pool(PoolParams(1, 8, 14, 14, 7, 3, "max"))
    pieces = re.findall(r"for \w+ in T\.vectorized\((.*?)\):\n\s*with T\.sblock\(\"pad", func.script())
    assert sorted(pieces) == ["3", "3", "3, 14", "3, 14"]
    assert "T.Shuffle" in func.script()


def test_max_pool_of_a_border_and_minus_infinity_is_minus_infinity():
    """The max starts from -inf, not -FLT_MAX: a window holding only -inf and border gives -inf, as in torch."""
    x = np.full((1, 2, 14, 14), -np.inf, dtype=np.float32)
    x[0, 1, 4:, 4:] = 1.0
    func = primfuncs.pool(PoolParams(1, 2, 14, 14, 7, 3, "max"))
    lib = tvm.tirx.build(tvm.IRModule({"main": func}), target=HOST)
    y = tvm.runtime.empty((1, 2, 2, 2), "float32", tvm.cpu())
    lib["main"](tvm.runtime.tensor(x), y)
    np.testing.assert_array_equal(y.numpy(), _torch_pool(x, 7, 3, "max"))
    assert np.isneginf(y.numpy()[0, 0]).all() and np.isneginf(y.numpy()[0, 1, 0, 0])


class _Pools(torch.nn.Module):
    """Pools the kernels take (stride implied, stride given, padded mean and max as the attention's global tokens)
    and pools they must leave to TVM (stride != kernel, ceil_mode, padding not counted, dilation, a map smaller than
    the window)."""

    def forward(self, x):
        kernel = F.avg_pool2d(x, 2) + F.avg_pool2d(x, 2, 2) + F.max_pool2d(x, 2)
        tokens = F.max_pool2d(x, 7, 7, 3) + F.avg_pool2d(x, 7, 7, 3)
        overlapping = F.avg_pool2d(x, 3, 2, 1) + F.max_pool2d(x, 3, 2, 1)
        ceil = F.avg_pool2d(x[..., :15, :15], 2, ceil_mode=True)
        uncounted = F.avg_pool2d(x, 7, 7, 3, count_include_pad=False)
        dilated = F.max_pool2d(x[..., :15, :15], 2, 2, 0, 2)
        smaller_than_window = F.max_pool2d(x[..., :5, :5], 7, 7, 3)
        maps = [kernel + ceil, tokens + uncounted, overlapping, dilated, smaller_than_window]
        return sum(m.sum((2, 3)) for m in maps)


class _DivisorPool(torch.nn.Module):
    def forward(self, x):
        return F.avg_pool2d(x, 2, divisor_override=3)


def _relax(module: torch.nn.Module, x: np.ndarray) -> tvm.IRModule:
    return to_relax(torch.export.export(module.eval(), (torch.from_numpy(x),)), HOST)


def test_lowering_turns_only_kernel_stride_pools_into_the_kernels():
    """kernel = stride (padded or not): the kernels; overlapping windows, ceil_mode, padding left out of the divisor,
    dilation, a map smaller than the window or a divisor override keep TVM's conversion (which ignores the divisor
    override, so that one is checked by structure only)."""
    x = np.random.default_rng(6).standard_normal((1, 6, 16, 16)).astype(np.float32)
    mod = _relax(_Pools(), x)
    text = mod.script()
    assert text.count("cls.pool_mean_1x6x16x16_k2,") == 2 and text.count("cls.pool_max_1x6x16x16_k2,") == 1
    assert "pool_max_1x6x16x16_k7_p3" in text and "pool_mean_1x6x16x16_k7_p3" in text
    assert text.count("R.nn.avg_pool2d") == 3 and text.count("R.nn.max_pool2d") == 3
    np.testing.assert_allclose(_run(mod, x), _Pools()(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    assert "pool_mean" not in _relax(_DivisorPool(), x).script()
