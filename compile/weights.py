"""Lift the tensor constants of a lowered Relax module into parameters of ``main``.

A library with its weights embedded keeps two copies of them while the VM loads (the mapped blob and the
deserialised constants, plus a transient third): about 3x the weight bytes at load time. Lifted out, the weights
go to their own file, which the device maps without copying (:mod:`bhvit.device.weights`), and ``main`` takes
``(x, *weights)``.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import GenericConst

__all__ = ["lift_weights"]


@relax.expr_functor.mutator
class _ConstantLifter(relax.PyExprMutator):
    """Replaces every tensor constant by a new parameter; the same constant object maps to one parameter."""

    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.params: list[relax.Var] = []
        self.values: list[np.ndarray] = []
        self._vars: dict[GenericConst, relax.Var] = {}

    def visit_generic_const_(self, const: GenericConst) -> relax.Expr:
        if not hasattr(const.value, "numpy"):  # dtypes, strings and other non-tensor constants stay
            return const
        var = self._vars.get(const)
        if var is None:
            var = relax.Var(f"w{len(self.params)}", const.ty)
            self._vars[const] = var
            self.params.append(var)
            self.values.append(const.value.numpy())
        return var


def lift_weights(mod: tvm.IRModule, func_name: str = "main") -> tuple[tvm.IRModule, list[np.ndarray]]:
    """``mod`` with the constants of ``func_name`` as trailing parameters, and their values in that order."""
    func = mod[func_name]
    lifter = _ConstantLifter(mod)
    body = lifter.visit_expr(func.body)
    if not lifter.params:
        return mod, []
    lifted = relax.Function([*func.params, *lifter.params], body, func.ret_ty, func.is_pure, func.attrs, func.span)
    out = mod.clone()
    out[func_name] = lifted
    return out, lifter.values
