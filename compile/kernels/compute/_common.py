"""Expression helpers shared by the binary computes."""

from __future__ import annotations

from numbers import Integral

from tvm import te, tirx
from tvm.ir.expr import Expr as PrimExpr

ACC_DTYPE = "int64"  # the default accumulator type (a target's tile config may ask for int32)


def popcount(word: PrimExpr, acc_dtype: str = ACC_DTYPE) -> PrimExpr:
    """Popcount of a uint64 word in the accumulator type."""
    return tirx.popcount(word).astype(acc_dtype)


EXACT_FLOAT_INT = 2**24  # float32 holds every integer of smaller magnitude exactly


def signed_dot(total: PrimExpr | int, sums: PrimExpr, in_float: bool = False) -> PrimExpr:
    """``float32(total - 2 * sums)``: the +-1 dot product from a popcount sum, formed in the sums' integer type or,
    ``in_float``, in float32, exact while ``|total|`` and the sums stay below :data:`EXACT_FLOAT_INT` (an int
    ``total`` is checked; an expression's bound is the caller's). Which form is shorter depends on the target
    (:attr:`~..schedule.generic.TileConfig.float_dot`)."""
    if isinstance(total, Integral):
        if in_float and abs(int(total)) >= EXACT_FLOAT_INT:
            raise ValueError(f"a dot product over {total} inputs is not exact in float32")
        total = tirx.const(int(total), "float32" if in_float else sums.dtype)
    if in_float:
        return total.astype("float32") - tirx.const(2, "float32") * sums.astype("float32")
    return (total.astype(sums.dtype) - 2 * sums).astype("float32")


def affine(dot: PrimExpr, scale: PrimExpr, bias: PrimExpr | None) -> PrimExpr:
    """float32(dot) * scale (+ bias): the fused epilogue of every binary product."""
    y = dot.astype("float32") * scale
    return y if bias is None else y + bias


def rprelu(y: PrimExpr, shift_in: PrimExpr, slope: PrimExpr, shift_out: PrimExpr) -> PrimExpr:
    """``where(y - shift_in >= 0, y - shift_in, (y - shift_in) * slope) + shift_out`` (branch-free select)."""
    y = y - shift_in
    return tirx.Select(y >= tirx.const(0, "float32"), y, y * slope) + shift_out


def placeholder(shape, dtype: str, name: str) -> te.Tensor:
    return te.placeholder(tuple(int(s) for s in shape), dtype, name=name)
