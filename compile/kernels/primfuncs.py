"""Scheduled PrimFuncs for every binary kernel: TE compute + the target's schedule."""

from __future__ import annotations

from collections.abc import Sequence

from tvm import te, tirx
from tvm.target import Target

from .compute import battention, bconv2d, bdense, bitpack
from .compute._common import placeholder
from .params import AttentionParams, Conv2dParams, DenseParams
from .schedule import schedule_for

__all__ = ["pack_rows", "pack_channels", "pack_tokens", "pack_levels", "dense", "dense_pack_pool", "conv2d", "qk", "av"]


def _scheduled(tensors: Sequence[te.Tensor], target: Target) -> tirx.PrimFunc:
    return schedule_for(te.create_prim_func(list(tensors)), target)["main"]


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


def pack_levels(p: AttentionParams, target: Target) -> tirx.PrimFunc:
    levels = _float_input((p.batch, p.heads, p.tokens, p.tokens), "levels")
    return _scheduled([levels, battention.pack_levels(levels)], target)


def dense(
    p: DenseParams, with_bias: bool, target: Target, residual_width: int | None = None, with_act: bool = False
) -> tirx.PrimFunc:
    """Packed (M, Kw), weights, scale [, bias] [, residual (M, R)] [, act (3, N)] -> (M, N) float32."""
    return _scheduled(bdense.bdense(p, with_bias, residual_width, with_act), target)


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
    return _scheduled(bdense.bdense_pack_pool(p, ratio, with_bias, residual_width, with_act, with_threshold), target)


def conv2d(p: Conv2dParams, layout: str, with_bias: bool, target: Target) -> tirx.PrimFunc:
    return _scheduled(bconv2d.bconv2d(p, layout, with_bias), target)


def qk(p: AttentionParams, target: Target) -> tirx.PrimFunc:
    return _scheduled(battention.bqk(p), target)


def av(p: AttentionParams, target: Target) -> tirx.PrimFunc:
    return _scheduled(battention.bav(p), target)
