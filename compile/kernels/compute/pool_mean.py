"""FP32 mean pool with kernel = stride = ``k`` and no padding (TE compute only): the shortcut of each downsampling.

Input ``x`` (B, C, H, W) float32; ``y[b, c, i, j] = sum_{r, s < k} x[b, c, i * k + r, j * k + s] / k^2`` (a partial
window at the border is dropped, as the pool does). One block, ``"out"``.
"""

from __future__ import annotations

from tvm import te, tirx

from ..blocks import OUT
from ..params import WindowParams
from ._common import placeholder

__all__ = ["pool_mean"]


def pool_mean(p: WindowParams) -> list[te.Tensor]:
    """Return ``[x, y]`` for ``te.create_prim_func``."""
    x = placeholder((p.batch, p.channels, p.height, p.width), "float32", "x")
    r, s = te.reduce_axis((0, p.k), name="r"), te.reduce_axis((0, p.k), name="s")
    inv = tirx.const(1.0 / (p.k * p.k), "float32")
    y = te.compute(
        (p.batch, p.channels, *p.grid),
        lambda b, c, i, j: te.sum(x[b, c, i * p.k + r, j * p.k + s] * inv, axis=[r, s]),
        name=OUT,
    )
    return [x, y]
