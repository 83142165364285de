"""AArch64 NEON micro-kernel for a popcount GEMM tile: ``eor`` (or ``and``), ``cnt``, ``udot`` per 128 bit-MACs.

LLVM lowers ``popcount(<2 x i64>)`` to ``cnt.16b`` plus a widening chain (``movi`` + ``udot`` against ones, then
``uadalp.2d`` into the int64 accumulator): five SIMD instructions per 128 bits. This tensor intrinsic keeps the
tile's sums in uint32x4 registers (the two 32-bit halves of each of two uint64 columns) for the whole reduction,
so ``udot`` accumulates the byte counts directly, and reduces them to one sum per column once, after the
reduction (``addp`` for int32 sums, ``uaddlp`` for int64). A lane gains at most 32 per word: no overflow below
2^32 bits.

The intrinsic covers one tile: ``MR`` rows (one or more) x ``2 NR`` uint64 columns over ``KW`` reduction words, the
row operand broadcast, the column operand read as contiguous pairs, combined as one of :data:`FORMS`: with xor in
dense, conv and Q·Kᵀ tiles (there a chunk of a row of keys), with and in A·V's (its 3 level masks of one token word
against one word of v). It is registered per shape on first use. :func:`tensorize_tile` names it where an acc block
has such a form, for the generic schedule to apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial

from tvm import tirx
from tvm.s_tir import Schedule
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as B

from ..blocks import TILE_AXES_ATTR
from .generic import Tile, tensorizes
from .intrin import register_intrin, row_view

__all__ = ["FORMS", "popcount_tile_intrin", "tensorize_tile"]

LANES = 2  # uint64 columns per 128-bit register
_UDOT, _CTPOP = "llvm.aarch64.neon.udot.v4i32.v16i8", "llvm.ctpop.v16i8"
_ADDP, _UADDLP = "llvm.aarch64.neon.addp.v4i32", "llvm.aarch64.neon.uaddlp.v2i64.v4i32"
# the block's product: "ab" a[m, k] ^ b[k, n] (dense, NHWC and column-tiled convs, Q·Kᵀ); "ba" b[k, n] ^ a[k, m]
# (NCHW convs tiled over output channels x pixels, whose weights are stored k-major); "levels" a[m, k, 0] & b[0, n]
# (A·V: the level masks of one token word against the same word of v)
FORMS = ("ab", "ba", "levels")


@cache
def popcount_tile_intrin(mr: int, nr: int, kw: int, form: str, acc_dtype: str) -> str:
    """Register (once) and name the intrinsic for an ``mr`` x ``2 nr`` tile over ``kw`` words in operand ``form``
    (:data:`FORMS`), summed into ``acc_dtype`` (int32 or int64)."""
    if form not in FORMS:
        raise ValueError(f"unknown operand form {form!r}, expected one of {FORMS}")
    name = f"bhvit_neon_popcount_{mr}x{nr}x{kw}_{form}_{acc_dtype}"
    return register_intrin(name, partial(_tile_func, mr, nr, kw, form, acc_dtype))


@dataclass(frozen=True)
class _Operands:
    """A tile's row operand ``A`` and column operand ``V`` in one of :data:`FORMS`."""

    form: str
    A: tirx.Buffer
    V: tirx.Buffer

    @staticmethod
    def shapes(form: str, mr: int, kw: int) -> tuple[tuple[int, ...], int]:
        """``A``'s shape and ``V``'s rows (words) for a tile of ``mr`` rows over ``kw`` words."""
        if form == "ab":
            return (mr, kw), kw
        return ((kw, mr), kw) if form == "ba" else ((mr, kw, 1), 1)

    def row(self, i, k):
        """The row operand of row ``i`` at word ``k``."""
        if self.form == "ab":
            return self.A[i, k]
        return self.A[k, i] if self.form == "ba" else self.A[i, k, 0]

    def col(self, k, j, lanes: int = 1):
        """The column operand at word ``k``: column ``j``, or ``lanes`` columns from ``j``."""
        index = [0 if self.form == "levels" else k, j]
        return self.V[tuple(index)] if lanes == 1 else self.V.vload(index, f"uint64x{lanes}")

    def ordered(self, r, v) -> tuple:
        """A row and a column operand (values or regions) in the block's order."""
        return (v, r) if self.form == "ba" else (r, v)

    def product(self, r, v):
        x, y = self.ordered(r, v)
        return x & y if self.form == "levels" else x ^ y


def _tile_func(mr: int, nr: int, kw: int, form: str, acc_dtype: str, tensorized: bool) -> tirx.PrimFunc:
    """The intrinsic's description (:func:`_describe`) or implementation (:func:`_implement`)."""
    nc = LANES * nr
    a_shape, b_rows = _Operands.shapes(form, mr, kw)
    with IRBuilder() as ib, B.prim_func(s_tir=True):
        a, b, c = (B.arg(n, B.handle()) for n in "abc")
        strides = [tirx.Var(f"sa{i}", "int32") for i in range(len(a_shape))]
        ops = _Operands(
            form,
            B.match_buffer(a, a_shape, "uint64", strides=strides, offset_factor=1),
            row_view(b, b_rows, nc, "uint64"),
        )
        C = row_view(c, mr, nc, acc_dtype)
        with B.sblock("root"):
            B.reads(C[0:mr, 0:nc], *ops.ordered(ops.A[tuple(slice(0, e) for e in a_shape)], ops.V[0:b_rows, 0:nc]))
            B.writes(C[0:mr, 0:nc])
            (_implement if tensorized else _describe)(ops, C, mr, nr, kw, acc_dtype)
    return ib.get()


def _describe(ops: _Operands, C: tirx.Buffer, mr: int, nr: int, kw: int, acc_dtype: str) -> None:
    """The block's reduction: k, then the rows where there is more than one, then the columns."""
    with B.grid(kw, mr, LANES * nr) if mr > 1 else B.grid(kw, LANES * nr) as loops, B.sblock("update"):
        k, *rows, j = loops
        if rows:
            vi, vj, vk = B.axis.remap("SSR", [rows[0], j, k])
        else:
            vi, (vj, vk) = 0, B.axis.remap("SR", [j, k])
        B.reads(C[vi, vj], *ops.ordered(ops.row(vi, vk), ops.col(vk, vj)))
        B.writes(C[vi, vj])
        popcount = tirx.Cast(acc_dtype, tirx.popcount(ops.product(ops.row(vi, vk), ops.col(vk, vj))))
        B.buffer_store(C, C[vi, vj] + popcount, [vi, vj])


def _implement(ops: _Operands, C: tirx.Buffer, mr: int, nr: int, kw: int, acc_dtype: str) -> None:
    """``udot`` of each 128 bits' byte counts into uint32x4 half-sums, reduced once after the reduction."""
    acc = B.decl_buffer((mr * nr,), "uint32x4")  # a small stack array: LLVM keeps it in registers
    with B.unroll(mr * nr) as t:
        B.buffer_store(acc, B.broadcast(B.uint32(0), 4), [t])
    with B.serial(kw) as k, B.unroll(mr) as i, B.unroll(nr) as j:
        word = ops.product(B.broadcast(ops.row(i, k), LANES), ops.col(k, j * LANES, LANES))
        counts = B.call_llvm_pure_intrin("uint8x16", _CTPOP, B.reinterpret("uint8x16", word))
        total = B.call_llvm_pure_intrin("uint32x4", _UDOT, acc[i * nr + j], B.broadcast(B.uint8(1), 16), counts)
        B.buffer_store(acc, total, [i * nr + j])
    _reduce_half_sums(C, acc, mr, nr, acc_dtype)


def _reduce_half_sums(C: tirx.Buffer, acc: tirx.Buffer, mr: int, nr: int, acc_dtype: str) -> None:
    """Add the tile's uint32x4 half-sums to ``C``, one sum per column: for int32, ``addp`` of two accumulators gives
    4 columns (of one, the low 2); for int64, ``uaddlp`` of one gives 2."""
    width, pairs = (4, nr // 2) if acc_dtype == "int32" else (LANES, 0)

    def add(i, first, lanes, value):
        span = B.ramp(first, 1, lanes)
        B.buffer_store(C, C[i, span] + value, [i, span])

    with B.unroll(mr) as i:
        if pairs:
            with B.unroll(pairs) as q:
                both = B.call_llvm_pure_intrin("uint32x4", _ADDP, acc[i * nr + 2 * q], acc[i * nr + 2 * q + 1])
                add(i, q * width, width, B.reinterpret("int32x4", both))
        with B.unroll(2 * pairs, nr) as j:
            if acc_dtype == "int64":
                add(
                    i,
                    j * LANES,
                    LANES,
                    B.reinterpret("int64x2", B.call_llvm_pure_intrin("uint64x2", _UADDLP, acc[i * nr + j])),
                )
            else:
                low = B.vectorlow(
                    B.call_llvm_pure_intrin("uint32x4", _ADDP, acc[i * nr + j], acc[i * nr + j]), dtype="uint32x2"
                )
                add(i, j * LANES, LANES, B.reinterpret("int32x2", low))


def tensorize_tile(sch: Schedule, acc, tile: Tile) -> str | None:
    """The micro-kernel's name for the acc block's reduction nest (one reduction loop over more than one word,
    then the tile's rows, unless it has one, and columns directly under it), or None where the block does not have
    that form (one word, another lane count, other operand access patterns). Checked on a copy of the schedule."""
    if tile.vl != LANES:
        return None
    loops = sch.get_loops(acc)
    nest = 3 if tile.mr > 1 else 2
    if len(loops) < nest:
        return None
    k, *rows, cols = loops[-nest:]
    kw = int(sch.get(k).extent)
    if kw < 2 or any(int(sch.get(r).extent) != tile.mr for r in rows) or int(sch.get(cols).extent) != tile.nr * tile.vl:
        return None
    block = sch.get(acc)
    name = popcount_tile_intrin(tile.mr, tile.nr, kw, _form(block), str(block.body.buffer.dtype))
    return name if tensorizes(sch, acc, k, name) else None


def _form(block) -> str:
    """The block's operand form (:data:`FORMS`): ``"levels"`` for an ``&`` (the trial tensorize rejects any other
    ``&`` block), else whether its ``x ^ y`` has the row operand first (``x`` indexed without the tile's column
    axis)."""
    if next(_nodes(block.body.value, tirx.BitwiseAnd), None) is not None:
        return "levels"
    xors = list(_nodes(block.body.value, tirx.BitwiseXor))
    if len(xors) != 1 or not hasattr(xors[0].a, "indices"):
        return "ab"
    col = block.iter_vars[int(block.annotations[TILE_AXES_ATTR][1])].var
    return "ba" if any(v.same_as(col) for index in xors[0].a.indices for v in _nodes(index, tirx.Var)) else "ab"


def _nodes(expr, kind):
    """The nodes of type ``kind`` in a PrimExpr tree (operands, casts, calls, loads)."""
    if isinstance(expr, kind):
        yield expr
    for field in ("a", "b", "value"):
        if hasattr(expr, field):
            yield from _nodes(getattr(expr, field), kind)
    for child in (*getattr(expr, "args", ()), *getattr(expr, "indices", ())):
        yield from _nodes(child, kind)
