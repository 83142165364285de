"""FP32 patch conv (TE compute only): a conv with kernel = stride = ``k`` as a matmul of the map's patches.

Inputs: ``x`` (B, C, H, W) float32, read in place (no patch copy); ``w`` (N / P, C * k * k, P) float32, the (K, N)
weight in column panels of width ``P`` (the register tile's width, so the tile reads one contiguous panel row per
reduction step), K ordered ``(c * k + kh) * k + kw``; optionally ``bias`` (N,). With ``gw = W // k`` and patch row
``m = i * gw + j``: ``acc[b, m, n] = sum_{c, kh, kw} x[b, c, i * k + kh, j * k + kw] * w[n // P, K, n % P]`` and
``y[b, n, m] = acc[b, m, n] + bias[n]`` (NCHW with the pixels flat, what the conv returns). Blocks: ``"acc"`` (tile
axes m, n) and ``"out"``.
"""

from __future__ import annotations

from tvm import te

from ..blocks import ACC, OUT, tile_axes
from ..params import PatchConvParams
from ._common import placeholder

__all__ = ["patch_conv"]


def patch_conv(p: PatchConvParams, panel: int, with_bias: bool = True) -> list[te.Tensor]:
    """Return ``[x, w, (bias,) y]`` for ``te.create_prim_func``; ``panel`` must divide N."""
    if p.n % panel:
        raise ValueError(f"panel width {panel} does not divide N = {p.n}")
    k, gw = p.k, p.grid[1]
    x = placeholder((p.batch, p.channels, p.height, p.width), "float32", "x")
    w = placeholder((p.n // panel, p.k_dim, panel), "float32", "w")
    bias = placeholder((p.n,), "float32", "bias") if with_bias else None
    c, kh, kw = (te.reduce_axis((0, e), name=n) for e, n in ((p.channels, "c"), (k, "kh"), (k, "kw")))
    acc = te.compute(
        (p.batch, p.m, p.n),
        lambda b, m, n: te.sum(
            x[b, c, m // gw * k + kh, m % gw * k + kw] * w[n // panel, (c * k + kh) * k + kw, n % panel],
            axis=[c, kh, kw],
        ),
        name=ACC,
        attrs=tile_axes(1, 2),
    )

    def out(b, n, m):
        return acc[b, m, n] if bias is None else acc[b, m, n] + bias[n]

    return [x, w, *([bias] if bias is not None else []), te.compute((p.batch, p.n, p.m), out, name=OUT)]
