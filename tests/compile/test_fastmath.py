"""Polynomial exp/erf (compile/fastmath.py): their error against float64, and no libm call left in built code."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

tvm = pytest.importorskip("tvm")

N = 1 << 20


def _module(op, shape=(N,)):
    """A Relax module ``main(x) = op(x)``."""
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            gv = bb.emit_output(op(x))
        bb.emit_func_output(gv)
    return bb.get()


def _lowered(mod):
    """``mod`` through the project's pass list for this host, and the target."""
    from bhvit.compile import pipeline
    from bhvit.compile.targets import resolve_target

    target = resolve_target("host", check_tools=False).tvm_target()
    with target:
        return tvm.transform.Sequential(pipeline.passes(target))(mod), target


def _built(mod):
    from tvm import relax

    lowered, target = _lowered(mod)
    return relax.VirtualMachine(tvm.compile(lowered, target=target, relax_pipeline=None), tvm.cpu())


def _run(vm, x: np.ndarray) -> np.ndarray:
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in units of the float32 spacing at ``ref``."""
    return np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref.astype(np.float32))).astype(np.float64)


def test_fast_exp_is_within_5_ulp_of_float64():
    from tvm import relax

    vm = _built(_module(relax.op.exp))
    rng = np.random.default_rng(0)
    for lo, hi, bound in [(-88.0, 88.0, 5.0), (-20.0, 0.0, 2.0)]:
        x = rng.uniform(lo, hi, N).astype("float32")
        ref = np.exp(x.astype(np.float64))
        normal = ref > np.finfo(np.float32).tiny  # the polynomial flushes results below the normal range to 0
        assert _ulps(_run(vm, x), ref)[normal].max() <= bound, (lo, hi)


def test_fast_erf_is_within_6_ulp_and_4e_7_of_float64():
    from tvm import relax

    vm = _built(_module(relax.op.erf))
    x = np.random.default_rng(1).uniform(-6.0, 6.0, N).astype("float32")
    ref = np.array([math.erf(v) for v in x.astype(np.float64)])
    got = _run(vm, x)
    assert _ulps(got, ref).max() <= 6.0
    assert np.abs(got - ref).max() <= 4e-7


def test_gelu_and_softmax_keep_float32_accuracy():
    from tvm import relax

    shape = (3, 37, 53)  # odd rows and an odd softmax width
    vm = _built(_module(lambda x: relax.op.nn.softmax(relax.op.nn.gelu(x)), shape))
    x = (np.random.default_rng(2).standard_normal(shape) * 4).astype("float32")
    x64 = x.astype(np.float64)
    gelu = x64 * (0.5 + 0.5 * np.vectorize(math.erf)(x64 / math.sqrt(2.0)))
    e = np.exp(gelu - gelu.max(-1, keepdims=True))
    np.testing.assert_allclose(_run(vm, x), e / e.sum(-1, keepdims=True), rtol=2e-6, atol=1e-8)


_LIBM_CALL = re.compile(r"call[^\n]*@(expf|erff|exp|erf|llvm\.exp\.[\w.]+)\(")


@pytest.mark.parametrize("fast", [False, True], ids=["without", "with"])
def test_no_libm_exp_or_erf_call_is_left(fast, monkeypatch):
    from bhvit.compile import pipeline
    from tvm import relax

    if not fast:  # the control: without the fast-math passes each element calls libm, so the check can fail
        monkeypatch.setattr(pipeline, "fast_math_passes", lambda: [])
    lowered, target = _lowered(_module(lambda x: relax.op.nn.softmax(relax.op.nn.gelu(x)), (4, 50, 64)))
    library = tvm.compile(lowered, target=target, relax_pipeline=None).mod.imports[0]
    calls = set(_LIBM_CALL.findall(library.inspect_source("ll")))
    assert not calls if fast else calls
