"""Constant folding of cheap Relax ops in numpy.

The imported graph views every per-channel parameter (``bias.view(1, -1, 1, 1)``, BN statistics, ...) through
``reshape``/``expand_dims`` of a constant. TVM's ``FoldConstant`` legalizes and LLVM-compiles one function per
folded call, which costs ~0.1 s each and dominated compile time (20 s of 35 s on ``test_bhvit``). This pass folds
those calls, and the elementwise arithmetic on constants that follows them (and the ``arange``/``mod`` index vectors of
``torch.roll``), in numpy instead.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .rewrite import bound_constant, rewrite_functions

__all__ = ["NumpyFoldConstant"]


def _shape(call) -> tuple[int, ...]:
    return tuple(int(v) for v in call.args[1].values)


# op name -> numpy evaluation of (call, constant argument arrays)
_FOLDERS = {
    "relax.reshape": lambda call, a: a[0].reshape(_shape(call)),
    "relax.expand_dims": lambda call, a: np.expand_dims(a[0], tuple(int(x) for x in call.attrs.axis)),
    "relax.squeeze": lambda call, a: np.squeeze(
        a[0], None if call.attrs.axis is None else tuple(int(x) for x in call.attrs.axis)
    ),
    "relax.permute_dims": lambda call, a: np.transpose(
        a[0], None if call.attrs.axes is None else [int(x) for x in call.attrs.axes]
    ),
    "relax.add": lambda call, a: a[0] + a[1],
    "relax.subtract": lambda call, a: a[0] - a[1],
    "relax.multiply": lambda call, a: a[0] * a[1],
    "relax.divide": lambda call, a: a[0] / a[1],
    "relax.negative": lambda call, a: -a[0],
    "relax.sqrt": lambda call, a: np.sqrt(a[0]),
    "relax.mod": lambda call, a: np.fmod(a[0], a[1]),
    "relax.floor_mod": lambda call, a: np.mod(a[0], a[1]),
    "relax.arange": lambda call, a: np.arange(*(int(p.value) for p in call.args)),
}
# how many leading arguments are tensors (the rest are shapes or scalars); all, when not listed
_TENSOR_ARGS = {"relax.reshape": 1, "relax.arange": 0}


@relax.expr_functor.mutator
class _Folder(relax.PyExprMutator):
    def visit_call_(self, call):
        ty = call.ty
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in _FOLDERS:
            return call
        tensor_args = call.args[: _TENSOR_ARGS.get(call.op.name, len(call.args))]
        consts = [bound_constant(self, a) for a in tensor_args]
        if any(c is None for c in consts) or not hasattr(ty, "dtype"):
            return call
        value = _FOLDERS[call.op.name](call, [c.value.numpy() for c in consts])
        return relax.const(np.ascontiguousarray(value, dtype=str(ty.dtype)), str(ty.dtype))


@tvm.transform.module_pass(opt_level=0, name="NumpyFoldConstant")
class NumpyFoldConstant:
    """Fold reshapes, transposes and elementwise arithmetic on constants in every Relax function."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, _Folder(mod))
