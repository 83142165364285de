"""Binary dense (TE compute only).

Inputs: ``a`` (M, Kw) uint64, the activations packed along K by :func:`bitpack.pack_rows`;
``w`` (Kw, N) uint64, weight sign bits packed along K with N contiguous (bit 1 = +1); ``scale``
and ``bias`` (N,) float32; optionally ``residual`` (M, R) float32 with R | N and ``act`` (3, N) float32
(RPReLU shift_in, slope, shift_out). Pad bits past K are 0 in both, so with ``dot = K - 2 * sum_k popcount(a ^ w)``
``y[m, n] = rprelu(dot[m, n] * scale[n] + bias[n] + residual[m, n % R])``.
Blocks: ``"acc"`` (int64 popcount sums, tile axes m, n) and ``"out"`` (float32 epilogue).

:func:`bdense_pack_pool` keeps ``y`` internal and writes what a following binary MLP layer reads instead: ``y``'s
sign words (``"pack"``, as :func:`bitpack.pack_rows`) and its mean over groups of ``ratio`` channels (``"pool"``).
"""

from __future__ import annotations

from tvm import te, tirx

from ..blocks import ACC, OUT, POOL, tile_axes
from ..params import WORD_BITS, DenseParams
from ._common import ACC_DTYPE, affine, placeholder, popcount, rprelu, signed_dot
from .bitpack import pack_rows

__all__ = ["bdense", "bdense_pack_pool"]


def bdense(
    p: DenseParams,
    with_bias: bool = True,
    residual_width: int | None = None,
    with_act: bool = False,
    acc_dtype: str = ACC_DTYPE,
    float_dot: bool = False,
) -> list[te.Tensor]:
    """Return ``[a, w, scale, (bias,) (residual,) (act,) out]`` for ``te.create_prim_func``.

    ``residual_width`` R (a divisor of N) adds ``residual[m, n % R]``; ``with_act`` applies the RPReLU after it.
    ``acc_dtype``: the popcount sums' integer type (int32 holds any K below 2^31 bits); ``float_dot``: form the dot
    products in float32 (:func:`._common.signed_dot`: exact for K below 2^24, refused above).
    """
    if residual_width is not None and p.n % residual_width:
        raise ValueError(f"residual width {residual_width} does not divide N = {p.n}")
    a = placeholder((p.m, p.k_words), "uint64", "a")
    w = placeholder((p.k_words, p.n), "uint64", "w")
    scale = placeholder((p.n,), "float32", "scale")
    bias = placeholder((p.n,), "float32", "bias") if with_bias else None
    residual = placeholder((p.m, residual_width), "float32", "residual") if residual_width is not None else None
    act = placeholder((3, p.n), "float32", "act") if with_act else None
    k = te.reduce_axis((0, p.k_words), name="k")
    acc = te.compute(
        (p.m, p.n), lambda m, n: te.sum(popcount(a[m, k] ^ w[k, n], acc_dtype), axis=k), name=ACC, attrs=tile_axes(0, 1)
    )

    def epilogue(m, n):
        y = affine(signed_dot(p.k, acc[m, n], float_dot), scale[n], None if bias is None else bias[n])
        if residual is not None:
            y = y + residual[m, tirx.floormod(n, residual_width)]
        return y if act is None else rprelu(y, act[0, n], act[1, n], act[2, n])

    out = te.compute((p.m, p.n), epilogue, name=OUT, attrs=tile_axes(0, 1))
    return [a, w, scale, *(t for t in (bias, residual, act) if t is not None), out]


def bdense_pack_pool(
    p: DenseParams,
    ratio: int,
    with_bias: bool = True,
    residual_width: int | None = None,
    with_act: bool = False,
    with_threshold: bool = False,
    acc_dtype: str = ACC_DTYPE,
    float_dot: bool = False,
) -> list[te.Tensor]:
    """Return ``[a, w, scale, (bias,) (residual,) (act,) (threshold,) pack, pool]``: ``pack`` (M, N/64) uint64 =
    sign words of ``y + threshold`` and ``pool`` (M, N/ratio) float32 = ``y`` averaged over each ``ratio``
    consecutive channels, ``y`` as in :func:`bdense` (not an output). Needs N % 64 == 0 and ratio | 64."""
    if p.n % WORD_BITS or WORD_BITS % ratio:
        raise ValueError(f"the fused pack/pool needs N % 64 == 0 and ratio | 64, got N = {p.n}, ratio = {ratio}")
    *inputs, y = bdense(p, with_bias, residual_width, with_act, acc_dtype, float_dot)
    threshold = placeholder((p.n,), "float32", "threshold") if with_threshold else None
    r = te.reduce_axis((0, ratio), name="r")
    inv = tirx.const(1.0 / ratio, "float32")  # exact: ratio is a power of two
    pool = te.compute((p.m, p.n // ratio), lambda m, j: te.sum(y[m, j * ratio + r] * inv, axis=r), name=POOL)
    return [*inputs, *([threshold] if threshold is not None else []), pack_rows(y, threshold), pool]
