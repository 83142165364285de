"""Binary grouped, strided, dilated 2-D convolution as a dense popcount GEMM per group (TE compute only).

Inputs:
* ``x`` uint64 sign words from :func:`bitpack.pack_channels` (bit 1 = value >= 0), NCHW:
  (N, G, Wg, H, W), NHWC: (N, H, W, G, Wg). Each group's Cg channels start a fresh word; the
  pad bits past Cg are 0.
* ``w`` (G, Kw, Og) uint64: weight sign bits in the tap-packed order below, Kw = ceil(KH*KW*Cg / 64).
* ``scale``, ``bias`` (G, Og) float32.
* with padding: ``row_class`` (Ho,) int32 and ``border`` int16, (RC, G, Og, Wo) where the tile runs along rows
  (below), else (RC, Wo, G, Og): read along the tile's vectors.

Blocks:
* ``"pad"`` (only with padding): ``x`` copied into a zero-bordered buffer, so later stages read
  without bounds checks. A zero word acts as -1 on every channel; ``border[row_class[y], ..., x]`` is
  ``Cg * KH * KW`` plus the sum of the weights over the taps that fell in the padding at output (y, x), which
  adds them back, so ``y = (border - 2 * popcount_sum) * scale + bias`` is exact (zero padding after the sign);
  without padding the constant term is ``Cg * KH * KW``.
* ``"gather"`` (im2col in bits): per output pixel and group, the taps' Cg bits concatenated into
  dense words, bit ``t * Cg + c`` = channel c of tap t = ky * KW + kx, built with shifts and ORs
  from the per-pixel words. Layout (N, G, Ho, Kw, Wo) for row vectors, else (N, G, Ho, Wo, Kw);
  annotated with the word axis.
* ``"acc"`` (int64) + ``"out"`` (float32 epilogue): the GEMM. Row vectors
  (:meth:`~..params.Conv2dParams.tiles_rows`): tile m = output channel, n = output column, so NCHW stores are
  contiguous; otherwise m = column, n = output channel.
Output float32: NCHW (N, G, Og, Ho, Wo), NHWC (N, Ho, Wo, G, Og) -- reshape to 4-D for free.
"""

from __future__ import annotations

from tvm import te, tirx

from ..blocks import ACC, GATHER, OUT, PAD, WORD_AXIS_ATTR, tile_axes
from ..packing import BORDER_DTYPE
from ..params import WORD_BITS, Conv2dParams, words
from ._common import ACC_DTYPE, EXACT_FLOAT_INT, affine, placeholder, popcount, signed_dot

__all__ = ["bconv2d", "tap_pieces"]


def tap_pieces(p: Conv2dParams) -> list[list[tuple[int, int, int]]]:
    """Per dense word: ``(tap, source word, shift)`` of each input word landing in it (shift < 0: right)."""
    cg = p.in_per_group
    pieces: list[list[tuple[int, int, int]]] = [[] for _ in range(words(p.taps))]
    for t in range(p.kernel[0] * p.kernel[1]):
        for s in range(p.group_words):
            start, length = t * cg + s * WORD_BITS, min(WORD_BITS, cg - s * WORD_BITS)
            for k in range(start // WORD_BITS, (start + length - 1) // WORD_BITS + 1):
                pieces[k].append((t, s, start - k * WORD_BITS))
    return pieces


def _shift(word, shift: int):
    if shift == 0:
        return word
    return word << tirx.const(shift, "uint64") if shift > 0 else word >> tirx.const(-shift, "uint64")


def _pad(x: te.Tensor, p: Conv2dParams, nchw: bool) -> te.Tensor:
    (ph, pw), h, w = p.padding, p.height, p.width
    n, g, wg = p.batch, p.groups, p.group_words

    def word(b, g_, s, yy, xx):
        iy, ix = yy - ph, xx - pw
        inside = tirx.all(iy >= 0, iy < h, ix >= 0, ix < w)
        return tirx.if_then_else(inside, x[b, g_, s, iy, ix] if nchw else x[b, iy, ix, g_, s], tirx.const(0, "uint64"))

    if nchw:
        return te.compute((n, g, wg, h + 2 * ph, w + 2 * pw), word, name=PAD)
    return te.compute((n, h + 2 * ph, w + 2 * pw, g, wg), lambda b, yy, xx, g_, s: word(b, g_, s, yy, xx), name=PAD)


def _gather(src: te.Tensor, p: Conv2dParams, nchw: bool, rows: bool) -> te.Tensor:
    (kw_, (sh, sw), (dh, dw)), pieces = (p.kernel[1], p.stride, p.dilation), tap_pieces(p)

    def word(b, g, y, k, x):
        def load(t, s):
            iy, ix = y * sh + t // kw_ * dh, x * sw + t % kw_ * dw
            return src[b, g, s, iy, ix] if nchw else src[b, iy, ix, g, s]

        expr = None
        for kk in reversed(range(len(pieces))):
            parts = [_shift(load(t, s), shift) for t, s, shift in pieces[kk]]
            value = parts[0]
            for part in parts[1:]:
                value = value | part
            expr = value if expr is None else tirx.Select(k == kk, value, expr)
        return expr

    shape = (p.batch, p.groups, p.out_height)
    if rows:
        return te.compute((*shape, len(pieces), p.out_width), word, name=GATHER, attrs={WORD_AXIS_ATTR: 3})
    return te.compute(
        (*shape, p.out_width, len(pieces)),
        lambda b, g, y, x, k: word(b, g, y, k, x),
        name=GATHER,
        attrs={WORD_AXIS_ATTR: 4},
    )


def bconv2d(
    p: Conv2dParams,
    layout: str = "NCHW",
    with_bias: bool = True,
    acc_dtype: str = ACC_DTYPE,
    float_dot: bool = False,
) -> list[te.Tensor]:
    """Return ``[x, w, scale, (bias,) (row_class, border,) out]``; ``acc_dtype`` and ``float_dot`` as in
    :func:`bdense.bdense`."""
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"unsupported layout {layout!r}")
    nchw = layout == "NCHW"
    n_, g_, wg, og_, ho_, wo_, kw_ = (
        p.batch,
        p.groups,
        p.group_words,
        p.out_per_group,
        p.out_height,
        p.out_width,
        words(p.taps),
    )
    x = placeholder((n_, g_, wg, p.height, p.width) if nchw else (n_, p.height, p.width, g_, wg), "uint64", "x")
    w = placeholder((g_, kw_, og_), "uint64", "w")
    scale = placeholder((g_, og_), "float32", "scale")
    bias = placeholder((g_, og_), "float32", "bias") if with_bias else None
    padded = p.reads_padding
    if float_dot and 2 * p.taps >= EXACT_FLOAT_INT:
        raise ValueError(f"{p}: a dot product over {p.taps} taps is not exact in float32")
    rows = p.tiles_rows(layout)
    if padded:
        row_class = placeholder((ho_,), "int32", "row_class")
        n_rc = len(p.border_classes(0)[1])
        border = placeholder((n_rc, g_, og_, wo_) if rows else (n_rc, wo_, g_, og_), BORDER_DTYPE.__name__, "border")

    taps = _gather(_pad(x, p, nchw) if padded else x, p, nchw, rows)
    k = te.reduce_axis((0, kw_), "k")
    if rows:
        acc = te.compute(
            (n_, g_, ho_, og_, wo_),
            lambda b, g, y, m, n: te.sum(popcount(taps[b, g, y, k, n] ^ w[g, k, m], acc_dtype), axis=k),
            name=ACC,
            attrs=tile_axes(3, 4),
        )
    else:
        acc = te.compute(
            (n_, g_, ho_, wo_, og_),
            lambda b, g, y, m, n: te.sum(popcount(taps[b, g, y, m, k] ^ w[g, k, n], acc_dtype), axis=k),
            name=ACC,
            attrs=tile_axes(3, 4),
        )

    def value(b, g, y, xo, o):
        total = p.taps  # with padding, the table's entry: at most 2 * taps (checked above)
        if padded:
            rc = row_class[y]
            total = border[rc, g, o, xo] if rows else border[rc, xo, g, o]
        dot = signed_dot(total, acc[b, g, y, o, xo] if rows else acc[b, g, y, xo, o], float_dot)
        return affine(dot, scale[g, o], None if bias is None else bias[g, o])

    if rows:
        out = te.compute(
            (n_, g_, og_, ho_, wo_), lambda b, g, m, y, n: value(b, g, y, n, m), name=OUT, attrs=tile_axes(2, 4)
        )
    elif nchw:
        out = te.compute(
            (n_, g_, og_, ho_, wo_), lambda b, g, n, y, m: value(b, g, y, m, n), name=OUT, attrs=tile_axes(4, 2)
        )
    else:
        out = te.compute(
            (n_, ho_, wo_, g_, og_), lambda b, y, m, g, n: value(b, g, y, m, n), name=OUT, attrs=tile_axes(2, 4)
        )
    return [x, w, scale, *([bias] if with_bias else []), *([row_class, border] if padded else []), out]
