"""FP32 stencil add (TE compute only): a block's residual, shift branches and MLP output in one pass over the map.

Inputs: ``x`` (B, C, H, W), ``tokens`` (B, H * W, C) token-major, ``taps`` (C, 4 R + 1), ``token_scale`` (C,) and
``bias`` (C,), all float32. ``out[b, c, h, w] = bias[c] + token_scale[c] * tokens[b, h * W + w, c] + sum_t taps[c, t]
* x[b, c, (h + dh_t) mod H, (w + dw_t) mod W]`` over the cross of :func:`bhvit.models.layers.shift.stencil_offsets`.
Block ``"row"`` copies each map row with ``R`` wrapped columns on both sides (so the horizontal taps read it at
plain offsets, no modulo per element); block ``"token_term"`` is ``bias + token_scale * tokens`` in the map's
layout (the transposing read); block ``"out"`` is the sum.
"""

from __future__ import annotations

from bhvit.models.layers.shift import stencil_offsets
from tvm import te, tirx

from ..blocks import OUT, ROW, TOKEN_TERM
from ..params import StencilParams
from ._common import placeholder

__all__ = ["stencil_add"]


def stencil_add(p: StencilParams) -> list[te.Tensor]:
    """Return ``[x, tokens, taps, token_scale, bias, out]`` for ``te.create_prim_func``."""
    b_, c_, h_, w_, r = p.batch, p.channels, p.height, p.width, p.reach
    x = placeholder((b_, c_, h_, w_), "float32", "x")
    tokens = placeholder((b_, h_ * w_, c_), "float32", "tokens")
    taps = placeholder((c_, p.taps), "float32", "taps")
    token_scale = placeholder((c_,), "float32", "token_scale")
    bias = placeholder((c_,), "float32", "bias")

    def wrapped(b, c, h, j):  # the modulo only where it wraps, so that the middle of the row is a plain copy
        inside = tirx.all(j >= r, j < w_ + r)
        return tirx.if_then_else(inside, x[b, c, h, j - r], x[b, c, h, tirx.floormod(j - r, w_)])

    row = te.compute((b_, c_, h_, w_ + 2 * r), wrapped, name=ROW)
    term = te.compute(
        (b_, c_, h_, w_), lambda b, c, h, w: bias[c] + token_scale[c] * tokens[b, h * w_ + w, c], name=TOKEN_TERM
    )

    def out(b, c, h, w):
        y = term[b, c, h, w]
        for t, (dh, dw) in enumerate(stencil_offsets(r)):
            read = x[b, c, tirx.floormod(h + dh, h_), w] if dh else row[b, c, h, w + r + dw]
            y = y + taps[c, t] * read
        return y

    return [x, tokens, taps, token_scale, bias, te.compute((b_, c_, h_, w_), out, name=OUT)]
