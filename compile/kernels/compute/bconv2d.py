"""Binary grouped, strided, dilated 2-D convolution (TE compute only).

Inputs:
* ``x`` uint64 sign words from :func:`bitpack.pack_channels` (bit 1 = value >= 0), NCHW:
  (N, G, Wg, H, W), NHWC: (N, H, W, G, Wg). Each group's Cg channels start a fresh word; the
  pad bits past Cg are 0 in activations and weights, so they add nothing.
* ``w`` (G, KH, KW, Wg, Og) uint64: weight sign bits, output channel o = g * Og + og contiguous.
* ``scale``, ``bias`` (G, Og) float32.
* with padding: ``row_class`` (Ho,), ``col_class`` (Wo,) int32 and ``border`` (RC, CC, G, Og) int32.

Zero padding is applied after the sign (torch ``F.conv2d(sign(x), sign(w))``): out-of-range taps
read the word 0, i.e. act as -1 on every channel, and ``border[row_class[y], col_class[x]]`` adds
back the sum of the weights over the taps that were padded at that output pixel, so
``y = (Cg * KH * KW - 2 * popcount_sum + border) * scale + bias`` is exact.
Output float32: NCHW (N, G, Og, Ho, Wo), NHWC (N, Ho, Wo, G, Og) -- reshape to 4-D for free.
Blocks: ``"acc"`` (N, G, Ho, Wo, Og) int64 with tile axes m = Wo, n = Og, and ``"out"``.
"""
from __future__ import annotations

from tvm import te, tirx

from ..params import Conv2dParams
from ._common import ACC_DTYPE, affine, int_const, placeholder, popcount

__all__ = ["bconv2d"]


def bconv2d(p: Conv2dParams, layout: str = "NCHW", with_bias: bool = True) -> list[te.Tensor]:
    """Return ``[x, w, scale, (bias,) (row_class, col_class, border,) out]``."""
    g_, wg, og_ = p.groups, p.group_words, p.out_per_group
    (kh_, kw_), (sh, sw), (ph, pw), (dh, dw) = p.kernel, p.stride, p.padding, p.dilation
    ho_, wo_ = p.out_height, p.out_width
    if layout == "NCHW":
        x = placeholder((p.batch, g_, wg, p.height, p.width), "uint64", "x")
        load = lambda b, g, c, iy, ix: x[b, g, c, iy, ix]  # noqa: E731
    elif layout == "NHWC":
        x = placeholder((p.batch, p.height, p.width, g_, wg), "uint64", "x")
        load = lambda b, g, c, iy, ix: x[b, iy, ix, g, c]  # noqa: E731
    else:
        raise ValueError(f"unsupported layout {layout!r}")
    w = placeholder((g_, kh_, kw_, wg, og_), "uint64", "w")
    scale = placeholder((g_, og_), "float32", "scale")
    bias = placeholder((g_, og_), "float32", "bias") if with_bias else None
    padded = p.reads_padding
    if padded:
        row_class = placeholder((ho_,), "int32", "row_class")
        col_class = placeholder((wo_,), "int32", "col_class")
        n_rc, n_cc = (len(p.border_classes(axis)[1]) for axis in (0, 1))
        border = placeholder((n_rc, n_cc, g_, og_), "int32", "border")

    ry, rx, rc = te.reduce_axis((0, kh_), "ry"), te.reduce_axis((0, kw_), "rx"), te.reduce_axis((0, wg), "rc")

    def tap(b, g, y, m):
        iy, ix = y * sh + ry * dh - ph, m * sw + rx * dw - pw
        if not padded:
            return load(b, g, rc, iy, ix)
        inside = tirx.all(iy >= 0, iy < p.height, ix >= 0, ix < p.width)
        return tirx.if_then_else(inside, load(b, g, rc, iy, ix), tirx.const(0, "uint64"))

    acc = te.compute((p.batch, g_, ho_, wo_, og_),
                     lambda b, g, y, m, n: te.sum(popcount(tap(b, g, y, m) ^ w[g, ry, rx, rc, n]), axis=[ry, rx, rc]),
                     name="acc")

    def value(b, g, n, y, m):
        dot = int_const(p.taps) - 2 * acc[b, g, y, m, n]
        if padded:
            dot = dot + border[row_class[y], col_class[m], g, n].astype(ACC_DTYPE)
        return affine(dot, scale[g, n], None if bias is None else bias[g, n])

    if layout == "NCHW":
        out = te.compute((p.batch, g_, og_, ho_, wo_), lambda b, g, n, y, m: value(b, g, n, y, m), name="out")
    else:
        out = te.compute((p.batch, ho_, wo_, g_, og_), lambda b, y, m, g, n: value(b, g, n, y, m), name="out")
    extra = [row_class, col_class, border] if padded else []
    return [x, w, scale, *([bias] if with_bias else []), *extra, out]

