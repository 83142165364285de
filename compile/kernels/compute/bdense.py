"""Binary dense (TE compute only).

Inputs: ``a`` (M, Kw) uint64, the activations packed along K by :func:`bitpack.pack_rows`;
``w`` (Kw, N) uint64, weight sign bits packed along K with N contiguous (bit 1 = +1); ``scale``
and ``bias`` (N,) float32. Pad bits past K are 0 in both, so
``y[m, n] = (K - 2 * sum_k popcount(a[m, k] ^ w[k, n])) * scale[n] + bias[n]``.
Blocks: ``"acc"`` (int64 popcount sums, tile axes m, n) and ``"out"`` (float32 epilogue).
"""
from __future__ import annotations

from tvm import te

from ..params import DenseParams
from ._common import affine, int_const, placeholder, popcount

__all__ = ["bdense"]


def bdense(p: DenseParams, with_bias: bool = True) -> list[te.Tensor]:
    """Return ``[a, w, scale, (bias,) out]`` for ``te.create_prim_func``."""
    a = placeholder((p.m, p.k_words), "uint64", "a")
    w = placeholder((p.k_words, p.n), "uint64", "w")
    scale = placeholder((p.n,), "float32", "scale")
    bias = placeholder((p.n,), "float32", "bias") if with_bias else None
    k = te.reduce_axis((0, p.k_words), name="k")
    acc = te.compute((p.m, p.n), lambda m, n: te.sum(popcount(a[m, k] ^ w[k, n]), axis=k), name="acc")
    out = te.compute((p.m, p.n), lambda m, n: affine(int_const(p.k) - 2 * acc[m, n], scale[n],
                                                      None if bias is None else bias[n]), name="out")
    return [a, w, scale, *([bias] if with_bias else []), out]
