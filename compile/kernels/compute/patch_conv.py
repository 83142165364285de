"""FP32 patch conv (TE compute only): a conv with kernel = stride = ``k`` as a matmul of the map's patches.

Inputs: ``x`` (B, C, H, W) float32, read in place (no patch copy); ``w`` (N / P, C * k * k, P) float32, the (K, N)
weight in column panels of width ``P`` (the register tile's width, so the tile reads one contiguous panel row per
reduction step), K ordered ``(c * k + kh) * k + kw``; optionally ``bias`` (N,).
``acc[b, i, j, n] = sum_{c, kh, kw} x[b, c, i * k + kh, j * k + kw] * w[n // P, K, n % P]`` and
``y[b, n, i, j] = acc[b, i, j, n] + bias[n]`` (NCHW, what the conv returns; a partial patch at the border is
dropped, as the conv does). Blocks: ``"acc"`` (tile axes j, n) and ``"out"``.
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
    k, (gh, gw) = p.k, p.grid
    x = placeholder((p.batch, p.channels, p.height, p.width), "float32", "x")
    w = placeholder((p.n // panel, p.k_dim, panel), "float32", "w")
    bias = placeholder((p.n,), "float32", "bias") if with_bias else None
    c, kh, kw = (te.reduce_axis((0, e), name=n) for e, n in ((p.channels, "c"), (k, "kh"), (k, "kw")))
    acc = te.compute(
        (p.batch, gh, gw, p.n),
        lambda b, i, j, n: te.sum(
            x[b, c, i * k + kh, j * k + kw] * w[n // panel, (c * k + kh) * k + kw, n % panel], axis=[c, kh, kw]
        ),
        name=ACC,
        attrs=tile_axes(2, 3),
    )

    def out(b, n, i, j):
        return acc[b, i, j, n] if bias is None else acc[b, i, j, n] + bias[n]

    return [x, w, *([bias] if bias is not None else []), te.compute((p.batch, p.n, gh, gw), out, name=OUT)]
