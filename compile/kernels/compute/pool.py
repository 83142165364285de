"""FP32 mean or max pool with kernel = stride = ``k`` (TE compute only): the shortcut of each downsampling (mean, no
padding) and the attention's global tokens (mean and max, padded).

Input ``x`` (B, C, H, W) float32; ``y[b, c, i, j]`` is the mean (``/ k^2``) or max of ``xp[b, c, i * k + r, j * k +
s]`` over ``r, s < k``, where ``xp`` is ``x`` bordered by ``padding`` (:class:`~..params.PoolParams`). With padding,
block ``"pad"`` first builds the part of ``xp`` the windows read; then block ``"out"``. A NaN in a max window is
dropped (the window's other values decide), where torch returns NaN.
"""

from __future__ import annotations

from tvm import te, tirx

from ..blocks import OUT, PAD
from ..params import PoolParams
from ._common import placeholder

__all__ = ["pool"]


# the max with -inf as its identity (``te.max`` starts from -FLT_MAX, so a window of -inf would come out finite)
_MAX = te.comm_reducer(lambda a, b: tirx.max(a, b), lambda dtype: tirx.const(float("-inf"), dtype), name="max")


def _fill_value(p: PoolParams) -> float:
    """What the border holds: nothing to the sum, the identity of the max."""
    return 0.0 if p.reduce == "mean" else float("-inf")


def pool(p: PoolParams) -> list[te.Tensor]:
    """Return ``[x, y]`` for ``te.create_prim_func``."""
    x = placeholder((p.batch, p.channels, p.height, p.width), "float32", "x")
    gh, gw = p.grid
    src, pad = x, p.padding
    if pad:
        fill = tirx.const(_fill_value(p), "float32")
        src = te.compute(
            (p.batch, p.channels, gh * p.k, gw * p.k),
            lambda b, c, h, w: tirx.if_then_else(
                tirx.all(h >= pad, h < p.height + pad, w >= pad, w < p.width + pad), x[b, c, h - pad, w - pad], fill
            ),
            name=PAD,
        )
    r, s = te.reduce_axis((0, p.k), name="r"), te.reduce_axis((0, p.k), name="s")

    def window(b, c, i, j):
        value = src[b, c, i * p.k + r, j * p.k + s]
        if p.reduce == "max":
            return _MAX(value, axis=[r, s])
        return te.sum(value * tirx.const(1.0 / (p.k * p.k), "float32"), axis=[r, s])

    return [x, te.compute((p.batch, p.channels, gh, gw), window, name=OUT)]
