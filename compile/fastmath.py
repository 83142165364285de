"""Polynomial ``exp`` and ``erf`` for the FP glue (softmax, GELU), so that their loops vectorise.

LLVM lowers TIR's ``exp`` and ``erf`` to calls of libm's ``expf``/``erff``, one per element: a vector loop holding
them runs lane by lane. TVM's ``FastMathTransform`` replaces Relax's ``softmax``, ``exp``, ``erf`` and ``tanh`` with
TOPI's polynomial versions, plain arithmetic that vectorises (``fast_exp``: ``2^n`` built in the exponent bits times
a degree-7 polynomial of the remainder; ``fast_erf``: a degree-13/8 rational function on ``[-4, 4]``, clamped
outside). It leaves ``gelu`` alone, so :class:`DecomposeGelu` first writes it out in the form its legalization has,
``x * (0.5 + erf(x * sqrt(0.5)) * 0.5)``.

Error against float64, measured on 4 M uniform float32 samples per range with an AVX-512 build (libm: 0.5 ulp for
``expf``, 0.9 ulp for ``erff``): ``fast_exp`` at most 4.5 ulp (relative 3.1e-7) on ``[-88, 88]`` and 1.4 ulp on
``[-20, 0]``, where softmax's max-subtracted logits that matter lie; ``fast_erf`` at most 5.5 ulp (absolute 3.8e-7) on
``[-6, 6]``. Both far below what the verification accepts; ``tests/compile/test_fastmath.py`` re-measures them.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax

from .rewrite import rewrite_functions

__all__ = ["DecomposeGelu", "fast_math_passes"]


@relax.expr_functor.mutator
class _GeluDecomposer(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.gelu"):
            return call
        x = call.args[0]
        dtype = str(call.ty.dtype)
        half = relax.const(0.5, dtype)
        erf = self.builder_.emit(
            relax.op.erf(self.builder_.emit(relax.op.multiply(x, relax.const(math.sqrt(0.5), dtype))))
        )
        return relax.op.multiply(
            x, self.builder_.emit(relax.op.add(half, self.builder_.emit(relax.op.multiply(erf, half))))
        )


@tvm.transform.module_pass(opt_level=0, name="DecomposeGelu")
class DecomposeGelu:
    """Rewrite every ``nn.gelu`` (the erf form) as ``x * (0.5 + erf(x * sqrt(0.5)) * 0.5)``."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, _GeluDecomposer(mod))


def fast_math_passes() -> list:
    """The Relax passes (before legalization) that replace softmax, exp, erf, tanh and GELU by polynomials."""
    return [DecomposeGelu(), relax.transform.FastMathTransform()]
