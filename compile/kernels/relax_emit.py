"""Emit the binary kernels into a Relax graph (``relax.BlockBuilder``).

Each ``emit_*`` adds a pack PrimFunc (float -> sign words, thresholds fused) and the product
PrimFunc (popcounts, with the ``scale``/``bias`` epilogue fused; the dense one optionally adds a
tiled residual and applies an RPReLU there too) to the builder's module, both
scheduled for ``target`` and marked opaque, and returns the float32 result expression. Weights
are packed here, once, to 1 bit per weight constants. :func:`emit_binary_mlp` chains two dense products, the
first one writing the second one's packed input (and the pooled shortcut) directly.

:func:`emit_patch_conv` emits an FP32 kernel, an FP conv with kernel = stride (stem, FP downsampling) as a
matmul of the patches, with its weight rearranged here, once, into the column panels its register tile reads;
:func:`emit_stencil_add` the FP32 sum that ends every block (residual, shift branches, MLP output);
:func:`emit_pool` the FP32 mean or max pool with kernel = stride (the downsampling shortcut, the attention's global
tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import NamedTuple

import numpy as np
from bhvit.models.layers.shift import stencil_reach
from tvm import relax, tirx
from tvm.target import Target

from . import packing, primfuncs
from .params import (
    LEVELS,
    WORD_BITS,
    AttentionParams,
    Conv2dParams,
    DenseParams,
    PatchConvParams,
    PoolParams,
    StencilParams,
    words,
)
from .schedule.patch_conv import patch_tile

# PrimFunc attributes read by :func:`bhvit.compile.pipeline.kernel_table` (and so by the on-device profile)
OP_ATTR = "bhvit.op"  # what the kernel computes, in words
BIT_MACS_ATTR = "bhvit.bit_macs"  # binary multiply-accumulates per call (0 for packs)
OPAQUE = 8  # tvm.relax OpPatternKind kOpaque: FuseOps never fuses into the kernel

__all__ = [
    "DenseWeights",
    "emit_binary_dense",
    "emit_binary_mlp",
    "emit_binary_conv2d",
    "HeadSplit",
    "emit_binary_qk",
    "emit_binary_av",
    "emit_patch_conv",
    "emit_stencil_add",
    "emit_pool",
]

IntPair = int | Sequence[int]


def _target(target) -> Target:
    return target if isinstance(target, Target) else Target(target)


def _shape(expr: relax.Expr) -> list[int]:
    return [int(s) for s in expr.ty.shape]


def _const(array: np.ndarray, dtype: str) -> relax.Constant:
    return relax.const(np.ascontiguousarray(array, dtype=dtype))


class Kernel(NamedTuple):
    """What a kernel computes (:data:`OP_ATTR`) and its binary multiply-accumulates per call."""

    op: str
    bit_macs: int = 0


def _add(bb: relax.BlockBuilder, func: tirx.PrimFunc, name: str, kernel: Kernel) -> relax.GlobalVar:
    """Add ``func`` (opaque, described by ``kernel``, deduplicated by the builder) to the builder's module."""
    func = func.with_attr("op_pattern", OPAQUE).with_attr(OP_ATTR, kernel.op).with_attr(BIT_MACS_ATTR, kernel.bit_macs)
    return bb.add_func(func.without_attr("global_symbol"), name)


def _tensor(shape: Sequence[int], dtype: str) -> relax.TensorType:
    return relax.TensorType([int(s) for s in shape], dtype)


_PACK = Kernel("pack float to sign bits")


def _call(
    bb: relax.BlockBuilder,
    func: tirx.PrimFunc,
    name: str,
    args: list,
    shape: Sequence[int],
    dtype: str,
    kernel: Kernel = _PACK,
) -> relax.Expr:
    """Emit a ``call_tir`` to ``func`` with one output."""
    return bb.emit(relax.call_tir(_add(bb, func, name, kernel), args, out_ty=_tensor(shape, dtype)))


def _call_outputs(
    bb: relax.BlockBuilder,
    func: tirx.PrimFunc,
    name: str,
    args: list,
    outs: Sequence[tuple[Sequence[int], str]],
    kernel: Kernel,
) -> list[relax.Expr]:
    """Emit a ``call_tir`` to ``func`` with several outputs; returns one expression per output."""
    call = bb.emit(relax.call_tir(_add(bb, func, name, kernel), args, out_ty=[_tensor(*out) for out in outs]))
    return [bb.emit(relax.TupleGetItem(call, i)) for i in range(len(outs))]


def _opt(values: np.ndarray | None, dtype: str = "float32") -> list:
    return [] if values is None else [_const(values, dtype)]


def _suffix(threshold, bias) -> str:
    return ("_t" if threshold is not None else "") + ("_b" if bias is not None else "")


def _rows(bb: relax.BlockBuilder, x: relax.Expr, m: int) -> relax.Expr:
    """``x`` (..., C) as an (m, C) matrix (no reshape when it is one already)."""
    shape = _shape(x)
    return x if len(shape) == 2 else bb.emit(relax.op.reshape(x, (m, shape[-1])))


class DenseWeights(NamedTuple):
    """The constants of one binary dense layer (see :func:`emit_binary_dense`)."""

    weight_signs: np.ndarray
    threshold: np.ndarray | None
    scale: np.ndarray
    bias: np.ndarray | None
    act: np.ndarray | None = None


def emit_binary_dense(
    bb: relax.BlockBuilder,
    x: relax.Expr,
    *,
    weight_signs: np.ndarray,
    threshold: np.ndarray | None,
    scale: np.ndarray,
    bias: np.ndarray | None,
    target,
    residual: relax.Expr | None = None,
    act: np.ndarray | None = None,
) -> relax.Expr:
    """y[..., n] = rprelu((sum_k sign(x[..., k] + threshold[k]) * weight_signs[n, k]) * scale[n] + bias[n]
    + residual[..., n % R]).

    ``x`` float32 (..., K); ``weight_signs`` (N, K) of ±1; ``residual`` float32 (..., R) with the leading shape of
    ``x`` and R | N; ``act`` (3, N): the RPReLU's shift_in, slope, shift_out. Returns float32 (..., N).
    """
    target = _target(target)
    *lead, k = _shape(x)
    fc = DenseWeights(weight_signs, threshold, scale, bias, act)
    p = DenseParams(prod(lead), k, int(weight_signs.shape[0]))
    xp = _pack_dense_input(bb, x, p, threshold, target)
    return _unrows(bb, _dense_packed(bb, xp, p, fc, _residual_rows(bb, residual, lead, p.m), target), lead)


def emit_binary_mlp(
    bb: relax.BlockBuilder, z: relax.Expr, *, fc1: DenseWeights, fc2: DenseWeights, ratio: int, target
) -> relax.Expr:
    """The binary MLP ``fc2(h, residual=pool(h))`` with ``h = fc1(z, residual=z)`` (each with its ``act``) and
    ``pool`` the mean over groups of ``ratio`` channels.

    When N (fc1's outputs) is a multiple of 64 and ``ratio`` divides 64, fc1's kernel writes fc2's packed input and
    ``pool(h)`` instead of ``h``; otherwise ``h`` is materialised and pooled by Relax ops.
    """
    target = _target(target)
    *lead, k = _shape(z)
    n = int(fc1.weight_signs.shape[0])
    if n % WORD_BITS or WORD_BITS % ratio:
        h = emit_binary_dense(bb, z, **fc1._asdict(), target=target, residual=z)
        pooled = bb.emit(relax.op.mean(bb.emit(relax.op.reshape(h, (*lead, n // ratio, ratio))), axis=-1))
        return emit_binary_dense(bb, h, **fc2._asdict(), target=target, residual=pooled)
    p = DenseParams(prod(lead), k, n)
    zr = _rows(bb, z, p.m)
    args = [_pack_dense_input(bb, zr, p, fc1.threshold, target), *_dense_constants(fc1, zr), *_opt(fc2.threshold)]
    name = f"bdense_pack_pool_{p.m}x{k}x{n}_p{ratio}{_suffix(fc2.threshold, fc1.bias)}" + (
        "_a" if fc1.act is not None else ""
    )
    func = primfuncs.dense_pack_pool(
        p, ratio, fc1.bias is not None, target, k, fc1.act is not None, fc2.threshold is not None
    )
    kernel = Kernel("binary dense + residual + RPReLU, then pack + pool (MLP fc1)", p.m * p.k * p.n)
    packed, pooled = _call_outputs(
        bb, func, name, args, [((p.m, n // WORD_BITS), "uint64"), ((p.m, n // ratio), "float32")], kernel
    )
    p2 = DenseParams(p.m, n, int(fc2.weight_signs.shape[0]))
    return _unrows(bb, _dense_packed(bb, packed, p2, fc2, pooled, target), lead)


def _residual_rows(bb: relax.BlockBuilder, residual: relax.Expr | None, lead: list[int], m: int) -> relax.Expr | None:
    if residual is None:
        return None
    if _shape(residual)[:-1] != lead:
        raise ValueError(f"residual shape {_shape(residual)} does not match the input's leading shape {lead}")
    return _rows(bb, residual, m)


def _unrows(bb: relax.BlockBuilder, y: relax.Expr, lead: list[int]) -> relax.Expr:
    """An (M, N) result back to the input's leading shape."""
    return bb.emit(relax.op.reshape(y, (*lead, _shape(y)[-1]))) if len(lead) != 1 else y


def _pack_dense_input(
    bb: relax.BlockBuilder, x: relax.Expr, p: DenseParams, threshold: np.ndarray | None, target: Target
) -> relax.Expr:
    """``x`` (..., K) -> its (M, Kw) sign words."""
    return _call(
        bb,
        primfuncs.pack_rows((p.m, p.k), threshold is not None, target),
        f"bpack_rows_{p.m}x{p.k}{_suffix(threshold, None)}",
        [_rows(bb, x, p.m), *_opt(threshold)],
        (p.m, p.k_words),
        "uint64",
    )


def _dense_constants(fc: DenseWeights, residual: relax.Expr | None) -> list:
    """The dense kernel's arguments after the packed input: weights, scale [, bias] [, residual] [, act]."""
    return [
        _const(packing.dense_weight(fc.weight_signs), "uint64"),
        _const(fc.scale, "float32"),
        *_opt(fc.bias),
        *([] if residual is None else [residual]),
        *_opt(fc.act),
    ]


def _dense_packed(
    bb: relax.BlockBuilder,
    xp: relax.Expr,
    p: DenseParams,
    fc: DenseWeights,
    residual: relax.Expr | None,
    target: Target,
) -> relax.Expr:
    """The dense kernel on packed (M, Kw) input, ``residual`` (M, R) or None; returns float32 (M, N)."""
    r = None if residual is None else _shape(residual)[-1]
    name = (
        f"bdense_{p.m}x{p.k}x{p.n}{_suffix(None, fc.bias)}"
        + (f"_r{r}" if r else "")
        + ("_a" if fc.act is not None else "")
    )
    func = primfuncs.dense(p, fc.bias is not None, target, r, fc.act is not None)
    op = "binary dense" + (" + residual" if r else "") + (" + RPReLU" if fc.act is not None else "")
    kernel = Kernel(op, p.m * p.k * p.n)
    return _call(bb, func, name, [xp, *_dense_constants(fc, residual)], (p.m, p.n), "float32", kernel)


def _pair(v: IntPair) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def emit_binary_conv2d(
    bb: relax.BlockBuilder,
    x: relax.Expr,
    *,
    weight_signs: np.ndarray,
    threshold: np.ndarray | None,
    scale: np.ndarray,
    bias: np.ndarray | None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    layout: str = "NCHW",
    target,
) -> relax.Expr:
    """conv2d(sign(x + threshold), weight_signs) * scale[o] + bias[o], zero padding after the sign.

    ``x`` float32 NCHW (or NHWC); ``weight_signs`` (O, I/groups, KH, KW) of ±1; the output has
    the input's layout.
    """
    target = _target(target)
    shape = _shape(x)
    b, c, h, w = shape if layout == "NCHW" else (shape[0], shape[3], shape[1], shape[2])
    o = int(weight_signs.shape[0])
    p = Conv2dParams(
        b,
        c,
        o,
        h,
        w,
        tuple(int(s) for s in weight_signs.shape[2:]),
        _pair(stride),
        _pair(padding),
        _pair(dilation),
        groups,
    )
    g, og = groups, p.out_per_group
    in_shape = (b, g, p.group_words, h, w) if layout == "NCHW" else (b, h, w, g, p.group_words)
    xp = _call(
        bb,
        primfuncs.pack_channels(shape, threshold is not None, g, layout, target),
        f"bpack_{layout.lower()}_{'x'.join(map(str, shape))}_g{g}{_suffix(threshold, None)}",
        [x, *_opt(threshold)],
        in_shape,
        "uint64",
    )
    args = [
        xp,
        _const(packing.conv_weight(weight_signs, g), "uint64"),
        _const(np.reshape(scale, (g, og)), "float32"),
        *_opt(None if bias is None else np.reshape(bias, (g, og))),
    ]
    if p.reads_padding:
        args += [_const(t, t.dtype.name) for t in packing.conv_border(p, weight_signs, layout)]
    ho, wo = p.out_height, p.out_width
    out5 = (b, g, og, ho, wo) if layout == "NCHW" else (b, ho, wo, g, og)
    name = (
        f"bconv2d_{layout.lower()}_{b}x{c}x{h}x{w}_o{o}_k{p.kernel[0]}x{p.kernel[1]}_s{p.stride[0]}x{p.stride[1]}"
        f"_p{p.padding[0]}x{p.padding[1]}_d{p.dilation[0]}x{p.dilation[1]}_g{g}{_suffix(None, bias)}"
    )
    kernel = Kernel(
        f"binary conv {p.kernel[0]}x{p.kernel[1]} stride {p.stride[0]} dilation {p.dilation[0]} groups {g}",
        b * o * ho * wo * p.taps,
    )
    y = _call(bb, primfuncs.conv2d(p, layout, bias is not None, target), name, args, out5, "float32", kernel)
    return bb.emit(relax.op.reshape(y, (b, o, ho, wo) if layout == "NCHW" else (b, ho, wo, o)))


def _attention_params(shape: Sequence[int]) -> AttentionParams:
    if len(shape) != 4:
        raise ValueError(f"expected a (B, H, n, d) tensor, got shape {shape}")
    return AttentionParams(*shape)


class HeadSplit(NamedTuple):
    """The source of a (B, H, n, d) attention operand that is the head split ``(B, n, H, d) -> (B, H, n, d)`` of a
    token-major tensor ``tokens`` (B, n, H*d) plus an optional per-channel ``shift`` (H*d,): its packs read
    ``tokens`` and add ``shift`` themselves, so the shifted, transposed copy is never made."""

    tokens: relax.Expr
    shift: np.ndarray | None = None


def _pack_heads(
    bb: relax.BlockBuilder, t: relax.Expr, source: HeadSplit | None, p: AttentionParams, along_tokens: bool, target
) -> relax.Expr:
    """The words of an attention operand ``t`` (B, H, n, d), q and k along ``d``, v (``along_tokens``) along the
    tokens: from its token-major ``source`` where it has one, else from ``t``."""
    key = "x".join(map(str, _shape(t)))
    shape = (p.batch, p.heads, p.token_words, p.dim) if along_tokens else (p.batch, p.heads, p.tokens, p.dim_words)
    kind = "tokens" if along_tokens else "rows"
    if source is None:
        func = primfuncs.pack_tokens(p, target) if along_tokens else primfuncs.pack_rows(_shape(t), False, target)
        return _call(bb, func, f"bpack_{kind}_{key}", [t], shape, "uint64")
    if _shape(source.tokens) != [p.batch, p.tokens, p.heads * p.dim]:
        raise ValueError(f"head split: tokens {source.tokens.ty.shape} do not split into {_shape(t)}")
    if source.shift is not None and source.shift.shape != (p.heads * p.dim,):
        raise ValueError(f"head split: shift {source.shift.shape} is not one value per channel")
    func = primfuncs.pack_heads(p, source.shift is not None, along_tokens, target)
    name = f"bpack_heads_{kind}_{key}{_suffix(source.shift, None)}"
    return _call(bb, func, name, [source.tokens, *_opt(source.shift)], shape, "uint64")


def emit_binary_qk(
    bb: relax.BlockBuilder,
    q: relax.Expr,
    k: relax.Expr,
    *,
    target,
    sources: tuple[HeadSplit | None, HeadSplit | None] = (None, None),
) -> relax.Expr:
    """(B, H, n, d) float32 q, k -> (B, H, n, n) float32 scores sign(q) @ sign(k)^T; ``sources``: the token-major
    tensors q and k are the head splits of, where known (:class:`HeadSplit`)."""
    target = _target(target)
    p = _attention_params(_shape(q))
    key = "x".join(map(str, _shape(q)))
    if len(sources) != 2:
        raise ValueError(f"sources: one entry for q and one for k, got {len(sources)}")
    qp, kp = (_pack_heads(bb, t, source, p, False, target) for t, source in zip((q, k), sources))
    kernel = Kernel("binary attention sign(q)·sign(k)ᵀ", p.batch * p.heads * p.tokens * p.tokens * p.dim)
    scores = (p.batch, p.heads, p.tokens, p.tokens)
    return _call(bb, primfuncs.qk(p, target), f"bqk_{key}", [qp, kp], scores, "float32", kernel)


def emit_binary_av(
    bb: relax.BlockBuilder, levels: relax.Expr, v: relax.Expr, *, target, source: HeadSplit | None = None
) -> relax.Expr:
    """levels (B, H, n, n) float32 integers 0..3, v (B, H, n, d) -> levels @ sign(v), (B, H, n, d) float32;
    ``source``: the token-major tensor v is the head split of, where known (:class:`HeadSplit`)."""
    target = _target(target)
    p = _attention_params(_shape(v))
    key = "x".join(map(str, _shape(v)))
    masks = _call(
        bb,
        primfuncs.pack_levels(p, target),
        f"bpack_levels_{key}",
        [levels],
        (p.batch, p.heads, p.tokens, LEVELS, words(p.tokens)),
        "uint64",
    )
    vp = _pack_heads(bb, v, source, p, True, target)
    kernel = Kernel(
        "binary attention levels·sign(v) (3 masks)", p.batch * p.heads * p.tokens * p.tokens * p.dim * LEVELS
    )
    return _call(bb, primfuncs.av(p, target), f"bav_{key}", [masks, vp], _shape(v), "float32", kernel)


def emit_patch_conv(
    bb: relax.BlockBuilder, x: relax.Expr, *, weight: np.ndarray, bias: np.ndarray | None, k: int, target
) -> relax.Expr:
    """y[b, n, i, j] = sum_{c, kh, kw} x[b, c, i*k + kh, j*k + kw] * weight[(c*k + kh)*k + kw, n] + bias[n]: the conv
    with a ``k x k`` kernel and stride ``k``, as a matmul of the patches.

    ``x`` float32 (B, C, H, W); ``weight`` (C*k*k, N); ``bias`` (N,) or None. Returns float32 (B, N, H//k, W//k).
    """
    target = _target(target)
    b, c, h, w = _shape(x)
    p = PatchConvParams(b, c, h, w, k, int(weight.shape[1]))
    if weight.shape[0] != p.k_dim:
        raise ValueError(f"patch conv weight {weight.shape} does not match {c} channels x {k}x{k} patches")
    tile = patch_tile(p, target)
    panel = tile.nr * tile.vl
    panels = weight.reshape(p.k_dim, p.n // panel, panel).transpose(1, 0, 2)
    name = f"patch_conv_{b}x{c}x{h}x{w}_k{k}_o{p.n}{_suffix(None, bias)}"
    func = primfuncs.patch_conv(p, tile, bias is not None)
    args = [x, _const(panels, "float32"), *_opt(bias)]
    kernel = Kernel("FP32 conv kernel = stride (patch matmul)")
    return _call(bb, func, name, args, (b, p.n, *p.grid), "float32", kernel)


def emit_stencil_add(
    bb: relax.BlockBuilder,
    x: relax.Expr,
    tokens: relax.Expr,
    *,
    taps: np.ndarray,
    token_scale: np.ndarray,
    bias: np.ndarray,
    target: Target | str | dict,
) -> relax.Expr:
    """y[b, c, h, w] = sum_t taps[c, t] * x[b, c, (h + dh_t) mod H, (w + dw_t) mod W] + token_scale[c] * tokens[b,
    h * W + w, c] + bias[c] (the cross of :func:`bhvit.models.layers.shift.stencil_offsets`).

    ``x`` float32 (B, C, H, W); ``tokens`` float32 (B, H*W, C); ``taps`` (C, 4R+1). Returns float32 (B, C, H, W).
    """
    b, c, h, w = _shape(x)
    if _shape(tokens) != [b, h * w, c] or taps.shape[0] != c:
        raise ValueError(f"stencil add: map {x.ty.shape}, tokens {tokens.ty.shape} and taps {taps.shape} disagree")
    p = StencilParams(b, c, h, w, stencil_reach(taps.shape[1]))
    name = f"stencil_add_{b}x{c}x{h}x{w}_r{p.reach}"
    func = primfuncs.stencil_add(p, _target(target))
    args = [x, tokens, _const(taps, "float32"), _const(token_scale, "float32"), _const(bias, "float32")]
    return _call(bb, func, name, args, (b, c, h, w), "float32", Kernel("FP32 residual + shift stencil + tokens"))


def emit_pool(bb: relax.BlockBuilder, x: relax.Expr, *, k: int, padding: int = 0, reduce: str = "mean") -> relax.Expr:
    """The means or maxima (``reduce``) of the ``k x k`` windows, stride ``k``, of ``x`` float32 (B, C, H, W)
    bordered by ``padding`` (:class:`~.params.PoolParams`): float32 (B, C, *grid)."""
    p = PoolParams(*_shape(x), k, padding, reduce)
    name = f"pool_{reduce}_{p.batch}x{p.channels}x{p.height}x{p.width}_k{k}" + (f"_p{padding}" if padding else "")
    kernel = Kernel(f"FP32 {reduce} pool, kernel = stride" + (f", padding {padding}" if padding else ""))
    return _call(bb, primfuncs.pool(p), name, [x], (p.batch, p.channels, *p.grid), "float32", kernel)
