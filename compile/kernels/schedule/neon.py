"""AArch64 NEON micro-kernel for a popcount GEMM tile: ``eor``, ``cnt``, ``udot`` per 128 bit-MACs.

LLVM lowers ``popcount(<2 x i64>)`` to ``cnt.16b`` plus a widening chain (``movi`` + ``udot`` against ones, then
``uadalp.2d`` into the int64 accumulator): five SIMD instructions per 128 bits. This tensor intrinsic keeps the
tile's sums in uint32x4 registers (the two 32-bit halves of each of two uint64 columns) for the whole reduction,
so ``udot`` accumulates the byte counts directly, and reduces them to one sum per column once, after the
reduction (``addp`` for int32 sums, ``uaddlp`` for int64). A lane gains at most 32 per word: no overflow below
2^32 bits.

The intrinsic covers one tile: ``MR`` rows x ``2 NR`` uint64 columns over ``KW`` reduction words, the row operand
broadcast (``a[m, k]``), the column operand read as contiguous pairs (``b[k, n:n+2]``); it is registered per shape
on first use. :func:`tensorize_tile` names it where an acc block has that form (dense and conv tiles) for the
generic schedule to apply.
"""

from __future__ import annotations

from functools import cache

from tvm import tirx
from tvm.s_tir import Schedule, TensorIntrin
from tvm.script import tirx as T

from ..blocks import TILE_AXES_ATTR
from .generic import Tile, tensorizes

__all__ = ["popcount_tile_intrin", "tensorize_tile"]

LANES = 2  # uint64 columns per 128-bit register
_UDOT, _CTPOP = "llvm.aarch64.neon.udot.v4i32.v16i8", "llvm.ctpop.v16i8"
_ADDP, _UADDLP = "llvm.aarch64.neon.addp.v4i32", "llvm.aarch64.neon.uaddlp.v2i64.v4i32"


@cache
def popcount_tile_intrin(mr: int, nr: int, kw: int, row_first: bool, acc_dtype: str) -> str:
    """Register (once) and name the intrinsic for an ``mr`` x ``2 nr`` tile over ``kw`` words summed into
    ``acc_dtype`` (int32 or int64). ``row_first``: the block computes ``a[m, k] ^ b[k, n]`` (dense, NHWC and
    column-tiled convs), else ``b[k, n] ^ a[k, m]`` (NCHW convs tiled over output channels x pixels, whose
    weights are stored k-major)."""
    name = f"bhvit_neon_popcount_{mr}x{nr}x{kw}_{'ab' if row_first else 'ba'}_{acc_dtype}"
    nc = LANES * nr
    # int32: one addp turns two accumulators into the sums of 4 columns; int64: one uaddlp per accumulator
    width, pairs = (4, nr // 2) if acc_dtype == "int32" else (LANES, 0)

    a_shape = (mr, kw) if row_first else (kw, mr)

    def row(a, i, k):  # the row operand of row i at word k
        return a[i, k] if row_first else a[k, i]

    def xor(a, b):
        return a ^ b if row_first else b ^ a

    def operands(a, b):  # the read regions in the block's order
        regions = (a[0 : a_shape[0], 0 : a_shape[1]], b[0:kw, 0:nc])
        return regions if row_first else regions[::-1]

    def sums(lo, hi):  # uint32x4 half-word sums of columns (0, 1) [and (2, 3)] -> per-column sums
        if acc_dtype == "int64":  # (never given ``hi``: no pairs)
            return T.reinterpret("int64x2", T.call_llvm_pure_intrin("uint64x2", _UADDLP, lo))
        if hi is None:
            return T.reinterpret(
                "int32x2", T.vectorlow(T.call_llvm_pure_intrin("uint32x4", _ADDP, lo, lo), dtype="uint32x2")
            )
        return T.reinterpret("int32x4", T.call_llvm_pure_intrin("uint32x4", _ADDP, lo, hi))

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa0, sa1, sb0, sc0 = T.int32(), T.int32(), T.int32(), T.int32()
        A = T.match_buffer(a, a_shape, "uint64", strides=[sa0, sa1], offset_factor=1)
        B = T.match_buffer(b, (kw, nc), "uint64", strides=[sb0, 1], offset_factor=1)
        C = T.match_buffer(c, (mr, nc), acc_dtype, strides=[sc0, 1], offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:mr, 0:nc], *operands(A, B))
            T.writes(C[0:mr, 0:nc])
            for k, i, j in T.grid(kw, mr, nc):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + T.Cast(acc_dtype, T.popcount(xor(row(A, vi, vk), B[vk, vj])))

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa0, sa1, sb0, sc0 = T.int32(), T.int32(), T.int32(), T.int32()
        A = T.match_buffer(a, a_shape, "uint64", strides=[sa0, sa1], offset_factor=1)
        B = T.match_buffer(b, (kw, nc), "uint64", strides=[sb0, 1], offset_factor=1)
        C = T.match_buffer(c, (mr, nc), acc_dtype, strides=[sc0, 1], offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:mr, 0:nc], *operands(A, B))
            T.writes(C[0:mr, 0:nc])
            acc = T.decl_buffer((mr * nr,), "uint32x4")  # a small stack array: LLVM keeps it in registers
            for t in T.unroll(mr * nr):
                acc[t] = T.broadcast(T.uint32(0), 4)
            for k in T.serial(kw):
                for i in T.unroll(mr):
                    for j in T.unroll(nr):
                        acc[i * nr + j] = T.call_llvm_pure_intrin(
                            "uint32x4",
                            _UDOT,
                            acc[i * nr + j],
                            T.broadcast(T.uint8(1), 16),
                            T.call_llvm_pure_intrin(
                                "uint8x16",
                                _CTPOP,
                                T.reinterpret(
                                    "uint8x16",
                                    xor(T.broadcast(row(A, i, k), LANES), B.vload([k, j * LANES], "uint64x2")),
                                ),
                            ),
                        )
            for i in T.unroll(mr):
                for q in T.unroll(pairs):
                    C[i, T.ramp(q * width, 1, width)] = C[i, T.ramp(q * width, 1, width)] + sums(
                        acc[i * nr + 2 * q], acc[i * nr + 2 * q + 1]
                    )
                for j in T.unroll(2 * pairs, nr):
                    C[i, T.ramp(j * LANES, 1, LANES)] = C[i, T.ramp(j * LANES, 1, LANES)] + sums(acc[i * nr + j], None)

    TensorIntrin.register(name, desc, impl, override=True)
    return name


def tensorize_tile(sch: Schedule, acc, tile: Tile) -> str | None:
    """The micro-kernel's name for the acc block's reduction nest (one reduction loop over more than one word,
    then the tile's rows and columns directly under it), or None where the block does not have that form (one
    word, one row, another lane count, other operand access patterns). Checked on a copy of the schedule."""
    if tile.vl != LANES or tile.mr < 2:
        return None
    loops = sch.get_loops(acc)
    if len(loops) < 3:
        return None
    k, rows, cols = loops[-3:]
    kw = int(sch.get(k).extent)
    if kw < 2 or int(sch.get(rows).extent) != tile.mr or int(sch.get(cols).extent) != tile.nr * tile.vl:
        return None
    block = sch.get(acc)
    name = popcount_tile_intrin(tile.mr, tile.nr, kw, _row_operand_first(block), str(block.body.buffer.dtype))
    return name if tensorizes(sch, acc, k, name) else None


def _row_operand_first(block) -> bool:
    """Whether the block's ``x ^ y`` has the row operand first (``x`` indexed without the tile's column axis)."""
    xors = list(_nodes(block.body.value, tirx.BitwiseXor))
    if len(xors) != 1 or not hasattr(xors[0].a, "indices"):
        return True
    col = block.iter_vars[int(block.annotations[TILE_AXES_ATTR][1])].var
    return not any(v.same_as(col) for index in xors[0].a.indices for v in _nodes(index, tirx.Var))


def _nodes(expr, kind):
    """The nodes of type ``kind`` in a PrimExpr tree (operands, casts, calls, loads)."""
    if isinstance(expr, kind):
        yield expr
    for field in ("a", "b", "value"):
        if hasattr(expr, field):
            yield from _nodes(getattr(expr, field), kind)
    for child in (*getattr(expr, "args", ()), *getattr(expr, "indices", ())):
        yield from _nodes(child, kind)
