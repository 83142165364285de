"""Binary attention products (TE compute only), on (B, H, tokens, dim) tensors.

* Q·Kᵀ: ``q``, ``k`` are packed along dim with :func:`bitpack.pack_rows` to (B, H, n, Dw) uint64
  (bit 1 = value >= 0, pad bits 0), and ``scores = d - 2 * sum popcount(q ^ k)`` (float32 of an
  exact integer). ``k`` is first copied to (B, H, Dw, n') (block ``"transpose"``), so the key axis, the
  vectorised one, is contiguous; ``n'`` is n, or n padded with zero words to whole vectors (``key_lanes``).
* A·V with 2-bit levels (quantisation decomposition): ``levels`` (B, H, n, n) float32 holding
  0..3 become three {0,1} masks ``level >= t`` (t = 1, 2, 3), packed along keys to
  (B, H, n, 3, Nw) by :func:`pack_levels`; ``v`` is packed along tokens to (B, H, Nw, d) by
  :func:`pack_tokens`. For a mask m and ±1 values s, ``sum_j m_j s_j = 2 popcount(m & s) - popcount(m)``,
  so ``out = 2 * sum popcount(mask & v) - rowsum`` with ``rowsum = sum popcount(mask)``.
* :func:`pack_heads` packs q, k or v straight from the token-major (B, n, H*d) tensor they are split from, its
  per-channel shift added in the pack.
Blocks: ``"acc"`` (tile axes m = query, n = key or dim), ``"out"``, and for A·V ``"rowsum"``.
"""

from __future__ import annotations

from tvm import te, tirx

from ..blocks import ACC, OUT, ROWSUM, TRANSPOSE, tile_axes
from ..params import LEVELS, AttentionParams, words
from ._common import ACC_DTYPE, placeholder, popcount, signed_dot
from .bitpack import pack, sign_bit

__all__ = ["pack_levels", "pack_tokens", "pack_heads", "bqk", "bav"]


def pack_levels(levels: te.Tensor) -> te.Tensor:
    """(B, H, n, n) float32 levels -> (B, H, n, 3, Nw) uint64; mask t holds ``level >= t + 1``."""
    b_, h_, n_, keys = (int(s) for s in levels.shape)
    half = lambda t: t.astype("float32") + tirx.const(0.5, "float32")  # noqa: E731  (levels are integers)
    return pack((b_, h_, n_, LEVELS, -(-keys // 64)), 4, keys, lambda i: levels[i[0], i[1], i[2], i[4]] >= half(i[3]))


def pack_tokens(v: te.Tensor) -> te.Tensor:
    """(B, H, n, d) float32 -> (B, H, Nw, d) uint64, packed along the token axis."""
    b_, h_, n_, d_ = (int(s) for s in v.shape)
    return pack((b_, h_, words(n_), d_), 2, n_, lambda i: v[i[0], i[1], i[2], i[3]] >= tirx.const(0.0, "float32"))


def pack_heads(x: te.Tensor, heads: int, shift: te.Tensor | None, along_tokens: bool) -> te.Tensor:
    """The packed q or k (B, H, n, Dw) (``along_tokens`` False, as :func:`.bitpack.pack_rows` of the split heads) or
    v (B, H, Nw, d) (True, as :func:`pack_tokens`), read from the token-major (B, n, C) tensor before its head
    split ``(B, n, H, d) -> (B, H, n, d)``, with the bits of ``x + shift`` (``shift`` (C,): the attention's learnable
    shift, added here instead of in a pass of its own)."""
    b_, n_, c_ = (int(s) for s in x.shape)
    if c_ % heads:
        raise ValueError(f"{c_} channels do not split into {heads} heads")
    d_ = c_ // heads

    def bit(i):  # i = (b, h, token, dim), the packed axis holding its bit position
        channel = i[1] * d_ + i[3]
        return sign_bit(x, (i[0], i[2], channel), shift, channel)

    if along_tokens:
        return pack((b_, heads, words(n_), d_), 2, n_, bit)
    return pack((b_, heads, n_, words(d_)), 3, d_, bit)


def bqk(p: AttentionParams, float_dot: bool = False, acc_dtype: str = ACC_DTYPE, key_lanes: int = 1) -> list[te.Tensor]:
    """Return ``[q, k, out]``: packed (B, H, n, Dw) operands -> (B, H, n, n) float32 scores; ``float_dot`` and
    ``acc_dtype`` as in :func:`.bdense.bdense`. The transposed k and the sums have their keys padded to a multiple
    of ``key_lanes`` (zero words, whose sums nothing reads), so a row of sums is whole vectors of that many lanes."""
    shape = (p.batch, p.heads, p.tokens, p.dim_words)
    q, k = placeholder(shape, "uint64", "q"), placeholder(shape, "uint64", "k")
    keys = -(-p.tokens // key_lanes) * key_lanes

    def key_word(b, h, c, n):
        return (
            k[b, h, n, c]
            if keys == p.tokens
            else tirx.if_then_else(n < p.tokens, k[b, h, n, c], tirx.const(0, "uint64"))
        )

    kt = te.compute((p.batch, p.heads, p.dim_words, keys), key_word, name=TRANSPOSE)
    c = te.reduce_axis((0, p.dim_words), name="c")
    acc = te.compute(
        (p.batch, p.heads, p.tokens, keys),
        lambda b, h, m, n: te.sum(popcount(q[b, h, m, c] ^ kt[b, h, c, n], acc_dtype), axis=c),
        name=ACC,
        attrs=tile_axes(2, 3),
    )
    out = te.compute(
        (p.batch, p.heads, p.tokens, p.tokens),
        lambda b, h, m, n: signed_dot(p.dim, acc[b, h, m, n], float_dot),
        name=OUT,
        attrs=tile_axes(2, 3),
    )
    return [q, k, out]


def bav(p: AttentionParams, acc_dtype: str = ACC_DTYPE) -> list[te.Tensor]:
    """Return ``[masks, v, out]``: masks (B, H, n, 3, Nw), v (B, H, Nw, d) -> (B, H, n, d) float32, the popcounts
    summed in ``acc_dtype``."""
    masks = placeholder((p.batch, p.heads, p.tokens, LEVELS, p.token_words), "uint64", "masks")
    v = placeholder((p.batch, p.heads, p.token_words, p.dim), "uint64", "v")
    t, c = te.reduce_axis((0, LEVELS), name="t"), te.reduce_axis((0, p.token_words), name="c")
    acc = te.compute(
        (p.batch, p.heads, p.tokens, p.dim),
        lambda b, h, m, n: te.sum(popcount(masks[b, h, m, t, c] & v[b, h, c, n], acc_dtype), axis=[t, c]),
        name=ACC,
        attrs=tile_axes(2, 3),
    )
    t2, c2 = te.reduce_axis((0, LEVELS), name="t"), te.reduce_axis((0, p.token_words), name="c")
    rowsum = te.compute(
        (p.batch, p.heads, p.tokens),
        lambda b, h, m: te.sum(popcount(masks[b, h, m, t2, c2], acc_dtype), axis=[t2, c2]),
        name=ROWSUM,
    )
    out = te.compute(
        acc.shape,
        lambda b, h, m, n: (2 * acc[b, h, m, n] - rowsum[b, h, m]).astype("float32"),
        name=OUT,
        attrs=tile_axes(2, 3),
    )
    return [masks, v, out]
