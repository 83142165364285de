"""Apply a Relax expression mutator to every Relax function of a module (the body of our module passes)."""

from __future__ import annotations

import tvm
from tvm import relax

__all__ = ["rewrite_functions"]


def rewrite_functions(mod: tvm.IRModule, mutator: relax.PyExprMutator) -> tvm.IRModule:
    """``mod`` with every Relax function replaced by ``mutator``'s rewrite of it (PrimFuncs stay as they are);
    ``mutator`` must have been made for ``mod``."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()
