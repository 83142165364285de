"""Expression helpers shared by the binary computes."""

from __future__ import annotations

from tvm import te, tirx
from tvm.ir.expr import Expr as PrimExpr

ACC_DTYPE = "int64"  # the default accumulator type (a target's tile config may ask for int32)


def popcount(word: PrimExpr, acc_dtype: str = ACC_DTYPE) -> PrimExpr:
    """Popcount of a uint64 word in the accumulator type."""
    return tirx.popcount(word).astype(acc_dtype)


def affine(dot: PrimExpr, scale: PrimExpr, bias: PrimExpr | None) -> PrimExpr:
    """float32(dot) * scale (+ bias): the fused epilogue of every binary product."""
    y = dot.astype("float32") * scale
    return y if bias is None else y + bias


def rprelu(y: PrimExpr, shift_in: PrimExpr, slope: PrimExpr, shift_out: PrimExpr) -> PrimExpr:
    """``where(y - shift_in >= 0, y - shift_in, (y - shift_in) * slope) + shift_out`` (branch-free select)."""
    y = y - shift_in
    return tirx.Select(y >= tirx.const(0, "float32"), y, y * slope) + shift_out


def int_const(value: int, acc_dtype: str = ACC_DTYPE) -> PrimExpr:
    return tirx.const(value, acc_dtype)


def placeholder(shape, dtype: str, name: str) -> te.Tensor:
    return te.placeholder(tuple(int(s) for s in shape), dtype, name=name)
