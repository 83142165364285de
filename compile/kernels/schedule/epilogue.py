"""Tensor intrinsics for the fused MLP fc1's per-row epilogue: one 64-column row of the float tile to its pool and
its sign word.

* :func:`pool_tree_intrin` (any LLVM target): the means of ``ratio`` consecutive floats as a tree of pairwise
  sums, each level one even/odd lane shuffle and an add over the whole row (``vpermt2ps`` on AVX-512, ``faddp`` on
  NEON). Scalarised per group, LLVM gathered each group's lanes with two shuffles and a blend per element. The
  sum's order changes from sequential to pairwise (FP32 rounding only).
* :func:`sign_word_intrin` (x86, AVX2 or better): the 64 signs as the lanes of a compare, read as one integer:
  ``pmovmskb`` of a byte mask, which LLVM folds into the compare's mask registers (with AVX-512: 4 ``vcmpps``,
  3 ``kunpck``, one ``kmovq``). The bit-by-bit OR of the generic pack took about 40 instructions per word.

Both are registered on first use (the pool per ratio, the sign word per threshold flag) and match the ``"pool"`` and
``"pack"`` blocks of :func:`~..compute.bdense.bdense_pack_pool` once their reductions are decomposed; the sign word
also takes any whole-word pack along a contiguous axis (:func:`~..compute.bitpack.pack_rows`). Each description is
built by the same function as its implementation, so the two cannot drift apart.
"""

from __future__ import annotations

from functools import cache, partial

from tvm import tirx
from tvm.ir.expr import Expr as PrimExpr
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as B

from ..params import WORD_BITS
from .intrin import register_intrin, row_view

__all__ = ["pool_tree_intrin", "sign_word_intrin"]

_MOVMSK = "llvm.x86.avx2.pmovmskb"  # <32 x i8> -> i32: the top bit of each byte
_HALF = WORD_BITS // 2


def _pairwise(v: PrimExpr, lanes: int) -> PrimExpr:
    """``v`` (``lanes`` wide) -> ``lanes / 2`` sums of neighbouring lanes."""
    half = lanes // 2
    return tirx.Shuffle([v], [2 * i for i in range(half)]) + tirx.Shuffle([v], [2 * i + 1 for i in range(half)])


@cache
def pool_tree_intrin(ratio: int) -> str:
    """Register (once) and name the intrinsic ``c[0, j] += mean(y[0, j * ratio : (j + 1) * ratio])`` for the
    ``64 / ratio`` groups of one 64-float row (``ratio`` a power of two)."""
    return register_intrin(f"bhvit_pool_tree_{ratio}", partial(_pool_func, ratio))


def _pool_func(ratio: int, tensorized: bool) -> tirx.PrimFunc:
    """The pool intrinsic's description (the pool's reduction, in order) or its implementation (the tree)."""
    groups = WORD_BITS // ratio
    inv = B.float32(1.0 / ratio)  # exact: ratio is a power of two
    with IRBuilder() as ib, B.prim_func():
        y, c = B.arg("y", B.handle()), B.arg("c", B.handle())
        Y = row_view(y, 1, WORD_BITS, "float32")
        C = row_view(c, 1, groups, "float32")
        with B.sblock("root"):
            B.reads(C[0, 0:groups], Y[0, 0:WORD_BITS])
            B.writes(C[0, 0:groups])
            if tensorized:
                lanes = B.ramp(0, 1, groups)
                means = _tree(Y[0, B.ramp(0, 1, WORD_BITS)], ratio) * B.broadcast(inv, groups)
                B.buffer_store(C, C[0, lanes] + means, [0, lanes])
            else:
                with B.grid(groups, ratio) as (j, r), B.sblock("update"):
                    vj, vr = B.axis.remap("SR", [j, r])
                    B.reads(C[0, vj], Y[0, vj * ratio + vr])
                    B.writes(C[0, vj])
                    B.buffer_store(C, C[0, vj] + Y[0, vj * ratio + vr] * inv, [0, vj])
    return ib.get()


def _tree(v: PrimExpr, ratio: int, lanes: int = WORD_BITS) -> PrimExpr:
    """The sums of ``ratio`` neighbouring lanes of ``v``, each level bound once."""
    if ratio == 1:
        return v
    level = tirx.Var(f"sums{lanes}", f"float32x{lanes}")
    return tirx.Let(level, v, _tree(_pairwise(level, lanes), ratio // 2, lanes // 2))


@cache
def sign_word_intrin(with_threshold: bool) -> str:
    """Register (once) and name the intrinsic ``c[0, 0] += word of bits (y[0, b] [+ th[b]] >= 0)``, bit ``b`` of
    64 (x86 only: ``pmovmskb``)."""
    name = f"bhvit_x86_sign_word{'_th' if with_threshold else ''}"
    return register_intrin(name, partial(_sign_word_func, with_threshold))


def _sign_word_func(with_threshold: bool, tensorized: bool) -> tirx.PrimFunc:
    """The sign-word intrinsic's description (a reduction over the 64 bits, as the pack computes it) or its
    implementation (two 32-lane compare masks)."""
    with IRBuilder() as ib, B.prim_func():
        y = B.arg("y", B.handle())
        th = B.arg("th", B.handle()) if with_threshold else None
        c = B.arg("c", B.handle())
        Y = row_view(y, 1, WORD_BITS, "float32")
        TH = B.match_buffer(th, (WORD_BITS,), "float32", offset_factor=1) if with_threshold else None
        C = row_view(c, 1, 1, "uint64")

        def value(index):
            return Y[0, index] + TH[index] if with_threshold else Y[0, index]

        with B.sblock("root"):
            B.reads(C[0, 0], Y[0, 0:WORD_BITS], *([TH[0:WORD_BITS]] if with_threshold else []))
            B.writes(C[0, 0])
            if tensorized:
                low, high = (_mask(value(B.ramp(h * _HALF, 1, _HALF))) for h in (0, 1))
                B.buffer_store(C, C[0, 0] + (low | (high << B.uint64(_HALF))), [0, 0])
            else:
                with B.serial(WORD_BITS) as b, B.sblock("update"):
                    vb = B.axis.reduce(WORD_BITS, b)
                    B.reads(C[0, 0], Y[0, vb], *([TH[vb]] if with_threshold else []))
                    B.writes(C[0, 0])
                    bit = B.Select(value(vb) >= B.float32(0), B.uint64(1) << B.Cast("uint64", vb), B.uint64(0))
                    B.buffer_store(C, C[0, 0] + bit, [0, 0])
    return ib.get()


def _mask(v: PrimExpr) -> PrimExpr:
    """The signs (``>= 0``) of 32 floats as the low 32 bits of a uint64."""
    byte = B.Select(
        v >= B.broadcast(B.float32(0), _HALF), B.broadcast(B.int8(-1), _HALF), B.broadcast(B.int8(0), _HALF)
    )
    return B.Cast("uint64", B.reinterpret("uint32", B.call_llvm_pure_intrin("int32", _MOVMSK, byte)))
