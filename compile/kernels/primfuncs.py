"""Scheduled PrimFuncs for every kernel (the binary ones, the FP32 patch conv, stencil add and mean/max pool): TE
compute + the target's schedule."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tvm import te, tirx
from tvm.target import Target

from .compute import battention, bconv2d, bdense, bitpack
from .compute import patch_conv as patch_compute
from .compute import pool as pool_compute
from .compute import stencil_add as stencil_compute
from .compute._common import ACC_DTYPE, placeholder
from .params import AttentionParams, Conv2dParams, DenseParams, PatchConvParams, PoolParams, StencilParams, words
from .schedule import patch_conv as patch_schedule
from .schedule import pool as pool_schedule
from .schedule import schedule_for, select
from .schedule import stencil_add as stencil_schedule
from .schedule.generic import Tile, tensorized

__all__ = [
    "pack_rows",
    "pack_channels",
    "pack_tokens",
    "pack_heads",
    "pack_levels",
    "dense",
    "dense_pack_pool",
    "conv2d",
    "qk",
    "av",
    "patch_conv",
    "stencil_add",
    "pool",
]


def _scheduled(tensors: Sequence[te.Tensor], target: Target) -> tirx.PrimFunc:
    return schedule_for(te.create_prim_func(list(tensors)), target)["main"]


def _scheduled_gemm(build: Callable[[str, bool], Sequence[te.Tensor]], k_words: int, target: Target) -> tirx.PrimFunc:
    """A GEMM compute built with the target's accumulator type and dot-product form (``build(acc_dtype,
    float_dot)``) and scheduled. A narrow (int32) accumulator pays only inside the target's micro-kernel: where a
    reduction over several words runs without it, LLVM's int64 popcount chain is the faster one, so the GEMM is
    rebuilt with int64 sums (one-word reductions keep int32: its float conversion vectorises)."""
    cfg = select(target)
    func = _scheduled(build(cfg.acc_dtype, cfg.float_dot), target)
    if cfg.acc_dtype != ACC_DTYPE and k_words > 1 and not tensorized(func):
        return _scheduled(build(ACC_DTYPE, cfg.float_dot), target)
    return func


def _float_input(shape: Sequence[int], name: str = "x") -> te.Tensor:
    return placeholder(shape, "float32", name)


def pack_rows(shape: Sequence[int], with_threshold: bool, target: Target) -> tirx.PrimFunc:
    """(..., K) float32 [, threshold (K,)] -> (..., Kw) uint64."""
    x = _float_input(shape)
    th = _float_input((shape[-1],), "threshold") if with_threshold else None
    return _scheduled([x, *([th] if th is not None else []), bitpack.pack_rows(x, th)], target)


def pack_channels(
    shape: Sequence[int], with_threshold: bool, groups: int, layout: str, target: Target
) -> tirx.PrimFunc:
    """NCHW/NHWC float32 [, threshold (C,)] -> per-group channel words."""
    x = _float_input(shape)
    th = _float_input((shape[1 if layout == "NCHW" else 3],), "threshold") if with_threshold else None
    return _scheduled([x, *([th] if th is not None else []), bitpack.pack_channels(x, th, groups, layout)], target)


def pack_tokens(p: AttentionParams, target: Target) -> tirx.PrimFunc:
    v = _float_input((p.batch, p.heads, p.tokens, p.dim), "v")
    return _scheduled([v, battention.pack_tokens(v)], target)


def pack_heads(p: AttentionParams, with_shift: bool, along_tokens: bool, target: Target) -> tirx.PrimFunc:
    """Token-major x (B, n, H*d) float32 [, shift (H*d,)] -> q/k words (B, H, n, dw) or, ``along_tokens``, v words
    (B, H, nw, d) of the split heads."""
    x = _float_input((p.batch, p.tokens, p.heads * p.dim))
    shift = _float_input((p.heads * p.dim,), "shift") if with_shift else None
    return _scheduled(
        [x, *([shift] if shift is not None else []), battention.pack_heads(x, p.heads, shift, along_tokens)], target
    )


def pack_levels(p: AttentionParams, target: Target) -> tirx.PrimFunc:
    levels = _float_input((p.batch, p.heads, p.tokens, p.tokens), "levels")
    return _scheduled([levels, battention.pack_levels(levels)], target)


def dense(
    p: DenseParams, with_bias: bool, target: Target, residual_width: int | None = None, with_act: bool = False
) -> tirx.PrimFunc:
    """Packed (M, Kw), weights, scale [, bias] [, residual (M, R)] [, act (3, N)] -> (M, N) float32."""
    return _scheduled_gemm(
        lambda acc, in_float: bdense.bdense(p, with_bias, residual_width, with_act, acc, in_float), p.k_words, target
    )


def dense_pack_pool(
    p: DenseParams,
    ratio: int,
    with_bias: bool,
    target: Target,
    residual_width: int | None = None,
    with_act: bool = False,
    with_threshold: bool = False,
) -> tirx.PrimFunc:
    """As :func:`dense` [, threshold (N,)] -> sign words (M, N/64) uint64 and group means (M, N/ratio) float32."""
    return _scheduled_gemm(
        lambda acc, in_float: bdense.bdense_pack_pool(
            p, ratio, with_bias, residual_width, with_act, with_threshold, acc, in_float
        ),
        p.k_words,
        target,
    )


def conv2d(p: Conv2dParams, layout: str, with_bias: bool, target: Target) -> tirx.PrimFunc:
    return _scheduled_gemm(
        lambda acc, in_float: bconv2d.bconv2d(p, layout, with_bias, acc, in_float), words(p.taps), target
    )


def qk(p: AttentionParams, target: Target) -> tirx.PrimFunc:
    """Packed q, k -> scores, summed in the target's accumulator type whatever the dot products' words: its one-row
    tiles convert every sum to a float, which int32 sums do a vector at a time (A76, 3 words: 22.5% -> 30.5% of the
    llvm-mca ceiling with int32 instead of int64 sums). Where the target has a micro-kernel (A76), the keys are
    padded to whole vectors: a row's sums have no shorter vector, and its chunks take the micro-kernel where the
    dot products are 2 words or more (one-word rows are vectorised, without a scalar tail)."""
    cfg = select(target)
    key_lanes = cfg.lanes if cfg.micro_kernel is not None else 1
    return _scheduled(battention.bqk(p, cfg.float_dot, cfg.acc_dtype, key_lanes), target)


def av(p: AttentionParams, target: Target) -> tirx.PrimFunc:
    """Packed level masks, v -> A·V, through the target's micro-kernel where it takes the tile (A76, one token word:
    its 3 masks against one word of v)."""
    return _scheduled_gemm(lambda acc_dtype, _: battention.bav(p, acc_dtype), p.level_words, target)


def patch_conv(p: PatchConvParams, tile: Tile, with_bias: bool) -> tirx.PrimFunc:
    """x (B, C, H, W) float32, w (N/P, C*k*k, P) with P = ``tile.nr * tile.vl`` [, bias (N,)] -> (B, N, H/k, W/k)
    float32 (``tile`` from :func:`~.schedule.patch_conv.patch_tile`)."""
    func = te.create_prim_func(patch_compute.patch_conv(p, tile.nr * tile.vl, with_bias))
    return patch_schedule.schedule(func, tile)["main"]


def stencil_add(p: StencilParams, target: Target) -> tirx.PrimFunc:
    """x (B, C, H, W), tokens (B, H*W, C), taps (C, 4R+1), token_scale (C,), bias (C,) -> (B, C, H, W) float32."""
    func = te.create_prim_func(stencil_compute.stencil_add(p))
    return stencil_schedule.schedule(func, p, target)["main"]


def pool(p: PoolParams) -> tirx.PrimFunc:
    """x (B, C, H, W) float32 -> the means or maxima of its bordered k x k windows, (B, C, *p.grid) float32 (any
    LLVM target)."""
    func = te.create_prim_func(pool_compute.pool(p))
    return pool_schedule.schedule(func, p)["main"]
