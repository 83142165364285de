"""Lifting a lowered module's constants into parameters keeps the function and dedups shared constants."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
from bhvit.compile.weights import lift_weights  # noqa: E402
from tvm import relax  # noqa: E402

pytestmark = pytest.mark.tvm


def _module(c1: np.ndarray, c2: np.ndarray) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([2, 3], "float32"))
    shared = relax.const(c1)
    with bb.function("main", [x]):
        y = bb.emit(relax.op.add(x, shared))
        z = bb.emit(relax.op.multiply(y, relax.const(c2)))
        bb.emit_func_output(bb.emit(relax.op.subtract(z, shared)))
    return bb.get()


def _run(mod: tvm.IRModule, *args: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return vm["main"](*(tvm.runtime.tensor(a) for a in args)).numpy()


def test_lifted_module_takes_weights_and_computes_the_same():
    rng = np.random.default_rng(0)
    c1, c2, x = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3), (3,), (2, 3)))
    mod = _module(c1, c2)
    lifted, weights = lift_weights(mod)
    assert len(lifted["main"].params) == 3 and len(weights) == 2  # c1 used twice: one parameter
    np.testing.assert_array_equal(weights[0], c1)
    np.testing.assert_array_equal(weights[1], c2)
    np.testing.assert_allclose(_run(lifted, x, *weights), _run(mod, x), rtol=1e-6)
    np.testing.assert_allclose(_run(mod, x), (x + c1) * c2 - c1, rtol=1e-6)
