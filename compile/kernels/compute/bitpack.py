"""Bit packing: float tensors to 64-bit sign words (TE compute only).

Bit convention: a bit is 1 iff its value (plus a per-channel threshold, when given) is >= 0, so
sign(0) = +1. Bit ``b`` of word ``w`` along the packed axis holds element ``w * 64 + b``
(little-endian, ``np.packbits(..., bitorder="little").view(np.uint64)``). Bits past the end of
the axis are 0. Every pack is one ``"pack"`` block reducing over the bits of a word, annotated
with the word axis position. Schedules assume that, in the float source, the packed axis is
contiguous when the word axis is last, and otherwise the output axes after the word axis are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tvm import te, tirx
from tvm.ir.expr import Expr as PrimExpr

from ..blocks import PACK, WORD_AXIS_ATTR
from ..params import WORD_BITS, words

__all__ = ["pack", "sign_bit", "pack_rows", "pack_channels"]

BitFn = Callable[[tuple], PrimExpr]


def pack(out_shape: Sequence[int], word_axis: int, count: int, bit: BitFn) -> te.Tensor:
    """Generic pack: ``out[..., w, ...]`` (``w`` at ``word_axis``) from ``bit(index)``.

    ``bit`` receives the output index with the word index replaced by the bit position along the
    packed axis (< ``count``) and returns a boolean expression.
    """
    b = te.reduce_axis((0, min(count, WORD_BITS)), name="b")  # a lone short word: only its bits
    one, zero = tirx.const(1, "uint64"), tirx.const(0, "uint64")

    def word(*idx):
        pos = idx[word_axis] * WORD_BITS + b
        cond = bit((*idx[:word_axis], pos, *idx[word_axis + 1 :]))
        if count > WORD_BITS and count % WORD_BITS:
            cond = tirx.if_then_else(pos < count, cond, tirx.const(False, "bool"))
        return te.sum(tirx.Select(cond, one << b.astype("uint64"), zero), axis=b)

    return te.compute(tuple(out_shape), word, name=PACK, attrs={WORD_AXIS_ATTR: word_axis})


def sign_bit(x: te.Tensor, idx: tuple, threshold: te.Tensor | None, channel: PrimExpr | int) -> PrimExpr:
    """Whether ``x[idx]`` (plus ``threshold[channel]``, when given) is >= 0: the bit it packs to."""
    value = x[idx] if threshold is None else x[idx] + threshold[channel]
    return value >= tirx.const(0.0, x.dtype)


def pack_rows(x: te.Tensor, threshold: te.Tensor | None = None) -> te.Tensor:
    """Pack the last axis: (..., K) float32 -> (..., ceil(K/64)) uint64; threshold shape (K,)."""
    *lead, k = (int(s) for s in x.shape)
    return pack((*lead, words(k)), len(lead), k, lambda i: sign_bit(x, i, threshold, i[-1]))


def pack_channels(x: te.Tensor, threshold: te.Tensor | None, groups: int, layout: str) -> te.Tensor:
    """Pack the channels of a feature map, each group starting a fresh word.

    NCHW (N, C, H, W) -> (N, G, Wg, H, W); NHWC (N, H, W, C) -> (N, H, W, G, Wg), where
    Wg = ceil(C / G / 64). No spatial padding: convs read out-of-range taps as the 0 word.
    """
    if layout == "NCHW":
        n, c, h, w = (int(s) for s in x.shape)
        cg = c // groups

        def bit(i):
            ch = i[1] * cg + i[2]
            return sign_bit(x, (i[0], ch, i[3], i[4]), threshold, ch)

        return pack((n, groups, words(cg), h, w), 2, cg, bit)
    if layout == "NHWC":
        n, h, w, c = (int(s) for s in x.shape)
        cg = c // groups

        def bit(i):
            ch = i[3] * cg + i[4]
            return sign_bit(x, (i[0], i[1], i[2], ch), threshold, ch)

        return pack((n, h, w, groups, words(cg)), 4, cg, bit)
    raise ValueError(f"unsupported layout {layout!r}")
