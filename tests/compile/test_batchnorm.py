"""Inference BatchNorm as a multiply-add (compile/batchnorm.py): the rewrite, what it leaves alone, its accuracy."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

tvm = pytest.importorskip("tvm")
torch = pytest.importorskip("torch")

SHAPE = (1, 24, 7, 9)


def _bn_params(rng: np.random.Generator, c: int) -> list[np.ndarray]:
    gamma, beta, mean = (rng.normal(size=c).astype(np.float32) for _ in range(3))
    return [gamma, beta, mean, rng.uniform(0.01, 4.0, size=c).astype(np.float32)]


def _module(params: list[np.ndarray], constant: tuple[bool, ...] = (True,) * 4, shape=SHAPE, axis: int = 1, **attrs):
    """``main(x, *non-constant params) = batch_norm(x, ...)[0]`` over ``axis`` (inference unless ``attrs`` say)."""
    from tvm import relax

    attrs = {"training": False, **attrs}
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    args = [
        relax.const(p) if const else relax.Var(f"p{i}", relax.TensorType(p.shape, "float32"))
        for i, (p, const) in enumerate(zip(params, constant, strict=True))
    ]
    with bb.function("main", [x, *(a for a in args if isinstance(a, relax.Var))]):
        with bb.dataflow():
            bn = bb.emit(relax.op.nn.batch_norm(x, *args, axis=axis, epsilon=1e-5, **attrs))
            gv = bb.emit_output(relax.TupleGetItem(bn, 0))
        bb.emit_func_output(gv)
    return bb.get()


def _ops(mod) -> set[str]:
    names = set()

    def visit(expr):
        if isinstance(expr, tvm.relax.Call) and isinstance(expr.op, tvm.ir.Op):
            names.add(expr.op.name)

    tvm.relax.analysis.post_order_visit(mod["main"], visit)
    return names


def test_constant_batch_norm_becomes_a_multiply_add():
    from bhvit.compile.batchnorm import BatchNormAffine
    from tvm import relax

    mod = _module(_bn_params(np.random.default_rng(0), SHAPE[1]))
    out = relax.transform.CanonicalizeBindings()(BatchNormAffine()(mod))
    assert _ops(out) == {"relax.multiply", "relax.add"}


@pytest.mark.parametrize("case", ["runtime-mean", "training"])
def test_batch_norm_with_runtime_statistics_is_left_alone(case):
    from bhvit.compile.batchnorm import BatchNormAffine

    params = _bn_params(np.random.default_rng(0), SHAPE[1])
    mod = _module(params, (True, True, False, True)) if case == "runtime-mean" else _module(params, training=True)
    assert "relax.nn.batch_norm" in _ops(BatchNormAffine()(mod))


def _built(mod):
    from bhvit.compile import pipeline
    from bhvit.compile.targets import resolve_target
    from tvm import relax

    target = resolve_target("host", check_tools=False).tvm_target()
    with target:
        lowered = tvm.transform.Sequential(pipeline.passes(target))(mod)
    return relax.VirtualMachine(tvm.compile(lowered, target=target, relax_pipeline=None), tvm.cpu())


def test_channels_last_batch_norm_without_affine_is_folded_and_exact():
    """axis -1 of (B, N, C) tokens, ``center`` and ``scale`` off (gamma and beta ignored, as the op does)."""
    from bhvit.compile.batchnorm import BatchNormAffine
    from tvm import relax

    rng = np.random.default_rng(2)
    shape = (2, 5, SHAPE[1])
    params = _bn_params(rng, SHAPE[1])
    mod = _module(params, shape=shape, axis=-1, center=False, scale=False)
    assert _ops(relax.transform.CanonicalizeBindings()(BatchNormAffine()(mod))) == {"relax.multiply", "relax.add"}
    x = rng.normal(size=shape).astype(np.float32)
    got = _built(mod)["main"](tvm.runtime.tensor(x)).numpy()
    mean, var = params[2].astype(np.float64), params[3].astype(np.float64)
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-6)


def test_built_batch_norm_is_as_accurate_as_torch_eval():
    rng = np.random.default_rng(1)
    params = _bn_params(rng, SHAPE[1])
    x = rng.normal(scale=3.0, size=SHAPE).astype(np.float32)
    got = _built(_module(params))["main"](tvm.runtime.tensor(x)).numpy()

    bn = torch.nn.BatchNorm2d(SHAPE[1], eps=1e-5).eval()
    with torch.no_grad():
        for buf, value in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), params, strict=True):
            buf.copy_(torch.from_numpy(value))
        ref = bn(torch.from_numpy(x)).numpy()
    gamma, beta, mean, var = (p[:, None, None].astype(np.float64) for p in params)
    exact = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta
    # both round the same float64 affine form, so their errors against it are alike (cancellation near zero
    # makes both many ulps of the result there)
    assert np.max(np.abs(got - exact)) <= 2 * np.max(np.abs(ref - exact))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
