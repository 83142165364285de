"""Apply a Relax expression mutator to every Relax function of a module (the body of our module passes), and the
constant behind an argument that those mutators fold."""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.ir.expr import Constant

__all__ = ["rewrite_functions", "bound_constant"]


def rewrite_functions(mod: tvm.IRModule, mutator: relax.PyExprMutator) -> tvm.IRModule:
    """``mod`` with every Relax function replaced by ``mutator``'s rewrite of it (PrimFuncs stay as they are);
    ``mutator`` must have been made for ``mod``."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()


def bound_constant(mutator: relax.PyExprMutator, expr: relax.Expr) -> Constant | None:
    """``expr`` when it is a constant, or the constant a variable is bound to inside ``mutator``'s current function;
    None otherwise."""
    if isinstance(expr, relax.Var):
        expr = mutator.lookup_binding(expr)
    return expr if isinstance(expr, Constant) else None
