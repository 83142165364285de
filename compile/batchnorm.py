"""Inference BatchNorm as one multiply-add per element.

TVM's ``DecomposeOpsForInference`` writes an inference ``nn.batch_norm`` as ``(x - mean) / sqrt(var + eps) * gamma +
beta``: with constant statistics the square root folds, but a subtraction and a division per element remain, and
``vdivps`` has a fifth of ``vmulps``' throughput (on Zen 4), so the BatchNorms of the FP glue ran at the speed of
their divisions. :class:`BatchNormAffine` rewrites each one whose four parameters are constants as ``x * s + t``
with ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s`` (computed in float64, rounded once), which is also
the form of PyTorch's own CPU inference kernel.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .rewrite import bound_constant, rewrite_functions

__all__ = ["BatchNormAffine"]


def _value(constant) -> np.ndarray | None:
    return None if constant is None else constant.value.numpy()


def _affine(
    gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(s, t)`` with ``BN(x) = x * s + t``, in float64 (the float64 twin of ``bhvit.models.layers.binary.bn_affine``,
    which folds a torch module)."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return scale, beta.astype(np.float64) - mean.astype(np.float64) * scale


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.batch_norm") or call.attrs.training:
            return call
        x, *params = call.args
        gamma, beta, mean, var = (_value(bound_constant(self, p)) for p in params)
        ndim = x.ty.ndim
        if mean is None or var is None or ndim < 1:
            return call
        # without ``scale`` or ``center`` the op ignores gamma or beta (the importer passes ones and zeros)
        gamma = gamma if call.attrs.scale else np.ones_like(mean)
        beta = beta if call.attrs.center else np.zeros_like(mean)
        if gamma is None or beta is None:
            return call
        values = (gamma, beta, mean, var)
        dtype = str(x.ty.dtype)
        axis = int(call.attrs.axis) % ndim
        shape = [1] * ndim
        shape[axis] = -1
        scale, shift = (
            relax.const(a.reshape(shape).astype(dtype), dtype) for a in _affine(*values, call.attrs.epsilon)
        )
        out = self.builder_.emit(relax.op.add(self.builder_.emit(relax.op.multiply(x, scale)), shift))
        # the moving statistics, which an inference batch_norm returns unchanged as its second and third outputs
        return relax.Tuple([out, params[2], params[3]])


@tvm.transform.module_pass(opt_level=0, name="BatchNormAffine")
class BatchNormAffine:
    """Rewrite every inference ``nn.batch_norm`` with constant parameters as ``x * s + t``."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, _Rewriter(mod))
