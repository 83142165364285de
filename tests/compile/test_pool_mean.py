"""The FP32 mean pool with kernel = stride (the downsampling shortcut): emitted kernel and lowering against torch."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
import torch  # noqa: E402
from bhvit.compile.kernels import primfuncs, relax_emit  # noqa: E402
from bhvit.compile.kernels import reference as ref  # noqa: E402
from bhvit.compile.kernels.params import WindowParams  # noqa: E402
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


@pytest.mark.parametrize("target", ["host", "generic"])
@pytest.mark.parametrize(
    "shape,k",
    [((1, 24, 56, 56), 2), ((2, 5, 10, 7), 3), ((1, 4, 6, 6), 6)],
    ids=["stage0-like", "partial-windows", "one-column"],
)
def test_emitted_pool_mean_equals_torch_avg_pool(shape, k, target):
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    var = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [var]):
        with bb.dataflow():
            y = bb.emit_output(relax_emit.emit_pool_mean(bb, var, k=k))
        bb.emit_func_output(y)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), target=TARGETS[target]), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = F.avg_pool2d(torch.from_numpy(x), k).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ref.pool_mean(x, k), expected, rtol=1e-6, atol=1e-6)


def test_rows_are_added_as_vectors_and_deinterleaved_by_shuffles():
    """Each output row: whole-row vector loads and lane shuffles, not one scalar load and insert per lane."""
    func = primfuncs.pool_mean(WindowParams(1, 8, 56, 56, 2))
    assert "T.Shuffle" in func.script()
    asm = tvm.tirx.build(tvm.IRModule({"main": func}), target=ZNVER4).inspect_source("asm")
    ops = [line.split()[0] for line in asm.splitlines() if line.startswith("\tv")]
    assert ops.count("vpermt2ps") + ops.count("vpermi2ps") >= 2
    assert ops.count("vinsertps") == 0
    neon = tvm.tirx.build(tvm.IRModule({"main": func}), target=A76).inspect_source("asm")
    assert "\tuzp1\t" in neon or "\tld2\t" in neon


class _Pools(torch.nn.Module):
    """Two pools the kernel takes (stride implied, stride given) and two it must leave to TVM."""

    def forward(self, x):
        kernel = F.avg_pool2d(x, 2) + F.avg_pool2d(x, 2, 2)
        padded = F.avg_pool2d(x, 3, 2, 1)
        ceil = F.avg_pool2d(x[..., :15, :15], 2, ceil_mode=True)
        return kernel + padded + ceil


class _DivisorPool(torch.nn.Module):
    def forward(self, x):
        return F.avg_pool2d(x, 2, divisor_override=3)


def _relax(module: torch.nn.Module, x: np.ndarray) -> tvm.IRModule:
    return to_relax(torch.export.export(module.eval(), (torch.from_numpy(x),)), HOST)


def test_lowering_turns_only_plain_avg_pools_into_the_kernel():
    """kernel = stride without padding: the kernel; padding, ceil_mode or a divisor override keep TVM's
    conversion (which ignores the divisor override, so that one is checked by structure only)."""
    x = np.random.default_rng(6).standard_normal((1, 6, 16, 16)).astype(np.float32)
    mod = _relax(_Pools(), x)
    text = mod.script()
    assert text.count("pool_mean_1x6x16x16_k2") >= 2 and text.count("R.nn.avg_pool2d") == 2
    np.testing.assert_allclose(_run(mod, x), _Pools()(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    assert "pool_mean" not in _relax(_DivisorPool(), x).script()
