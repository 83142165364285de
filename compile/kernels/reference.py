"""Numpy oracles for every binary kernel, with exact integer arithmetic.

``sign`` maps v >= 0 to +1 (sign(0) = +1), the kit-wide bit convention. Products are integer dot
products of ±1 (or {0, 1}) values; ``scale``/``bias`` are then applied in float32, exactly as
``F.linear(sign(x), w) * scale + bias`` and ``F.conv2d(sign(x), w, padding=...)`` compute them.
"""

from __future__ import annotations

import numpy as np

from .packing import pack_bits
from .params import LEVELS, Conv2dParams

__all__ = [
    "sign",
    "pack_rows",
    "pack_channels",
    "pack_tokens",
    "pack_levels",
    "rprelu",
    "dense",
    "dense_pack_pool",
    "conv2d",
    "qk",
    "av",
    "pool",
]


def _shifted(x: np.ndarray, threshold: np.ndarray | None, axis: int) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if threshold is None:
        return x
    shape = [1] * x.ndim
    shape[axis] = -1
    return x + np.asarray(threshold, np.float32).reshape(shape)


def sign(x: np.ndarray, threshold: np.ndarray | None = None, axis: int = -1) -> np.ndarray:
    """±1 int64 of ``x + threshold`` (threshold along ``axis``), with sign(0) = +1."""
    return np.where(_shifted(x, threshold, axis) >= 0, 1, -1).astype(np.int64)


def pack_rows(x: np.ndarray, threshold: np.ndarray | None = None) -> np.ndarray:
    return pack_bits(_shifted(x, threshold, -1) >= 0, axis=-1)


def pack_channels(x: np.ndarray, threshold: np.ndarray | None, groups: int, layout: str = "NCHW") -> np.ndarray:
    """NCHW -> (N, G, Wg, H, W); NHWC -> (N, H, W, G, Wg)."""
    c_axis = 1 if layout == "NCHW" else 3
    bits = _shifted(x, threshold, c_axis) >= 0
    shape = list(bits.shape)
    shape[c_axis : c_axis + 1] = [groups, shape[c_axis] // groups]
    return pack_bits(bits.reshape(shape), axis=c_axis + 1)


def pack_tokens(v: np.ndarray) -> np.ndarray:
    return pack_bits(np.asarray(v) >= 0, axis=2)


def pack_levels(levels: np.ndarray) -> np.ndarray:
    masks = np.stack([np.asarray(levels) >= t for t in range(1, LEVELS + 1)], axis=3)  # (B, H, n, 3, n)
    return pack_bits(masks, axis=-1)


def _affine(dot: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, shape) -> np.ndarray:
    y = dot.astype(np.float32) * np.asarray(scale, np.float32).reshape(shape)
    return y if bias is None else y + np.asarray(bias, np.float32).reshape(shape)


def rprelu(y: np.ndarray, act: np.ndarray) -> np.ndarray:
    """RPReLU on the last axis, ``act`` = (shift_in, slope, shift_out) rows of shape (3, C), in float32."""
    shift_in, slope, shift_out = np.asarray(act, np.float32)
    y = y - shift_in
    return np.where(y >= 0, y, y * slope) + shift_out


def dense(
    x: np.ndarray,
    weight_signs: np.ndarray,
    threshold: np.ndarray | None,
    scale: np.ndarray,
    bias: np.ndarray | None,
    residual: np.ndarray | None = None,
    act: np.ndarray | None = None,
) -> np.ndarray:
    """(..., K) float32 -> (..., N): rprelu((sign(x + threshold) @ weight_signs.T) * scale + bias + tile(residual)),
    ``tile`` repeating the (..., R) residual N / R times along the last axis."""
    dot = sign(x, threshold) @ np.asarray(weight_signs, np.int64).T
    y = _affine(dot, scale, bias, (-1,))
    if residual is not None:
        residual = np.asarray(residual, np.float32)
        y = y + np.tile(residual, (1,) * (residual.ndim - 1) + (y.shape[-1] // residual.shape[-1],))
    return y if act is None else rprelu(y, act)


def dense_pack_pool(
    x: np.ndarray,
    weight_signs: np.ndarray,
    threshold: np.ndarray | None,
    scale: np.ndarray,
    bias: np.ndarray | None,
    residual: np.ndarray | None,
    act: np.ndarray | None,
    next_threshold: np.ndarray | None,
    ratio: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``y = dense(...)`` -> (``pack_rows(y, next_threshold)``, ``y`` averaged over groups of ``ratio`` channels)."""
    y = dense(x, weight_signs, threshold, scale, bias, residual, act)
    return pack_rows(y, next_threshold), y.reshape(*y.shape[:-1], -1, ratio).mean(-1, dtype=np.float32)


def conv2d(
    x: np.ndarray,
    weight_signs: np.ndarray,
    threshold: np.ndarray | None,
    scale: np.ndarray,
    bias: np.ndarray | None,
    p: Conv2dParams,
    layout: str = "NCHW",
) -> np.ndarray:
    """conv2d(sign(x + threshold), weight_signs) with zero padding after the sign, * scale + bias."""
    if layout == "NHWC":
        x = np.moveaxis(x, 3, 1)
    s = sign(x, threshold, axis=1)
    (ph, pw), (sh, sw), (dh, dw) = p.padding, p.stride, p.dilation
    s = np.pad(s, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo, g = p.out_height, p.out_width, p.groups
    w = np.asarray(weight_signs, np.int64).reshape(g, p.out_per_group, p.in_per_group, *p.kernel)
    dot = np.zeros((p.batch, g, p.out_per_group, ho, wo), np.int64)
    for i in range(p.kernel[0]):
        for j in range(p.kernel[1]):
            patch = s[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
            patch = patch.reshape(p.batch, g, p.in_per_group, ho, wo)
            dot += np.einsum("bgchw,goc->bgohw", patch, w[..., i, j])
    y = _affine(dot.reshape(p.batch, p.out_channels, ho, wo), scale, bias, (1, -1, 1, 1))
    return np.moveaxis(y, 1, 3) if layout == "NHWC" else y


def qk(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(B, H, n, d) x2 -> (B, H, n, n): sign(q) @ sign(k)^T as float32."""
    return (sign(q) @ np.swapaxes(sign(k), -1, -2)).astype(np.float32)


def av(levels: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(B, H, n, n) integer levels 0..3, (B, H, n, d) -> levels @ sign(v) as float32."""
    return (np.rint(levels).astype(np.int64) @ sign(v)).astype(np.float32)


def pool(x: np.ndarray, k: int, padding: int = 0, reduce: str = "mean") -> np.ndarray:
    """(B, C, H, W) -> the means (divided by ``k * k``) or maxima of the ``k x k`` windows, stride ``k``, of ``x``
    bordered by ``padding`` zeros (mean) or -inf (max); a partial window at the far border dropped."""
    b, c, h, w = x.shape
    fill = 0.0 if reduce == "mean" else -np.inf
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    gh, gw = (h + 2 * padding - k) // k + 1, (w + 2 * padding - k) // k + 1
    windows = x[:, :, : gh * k, : gw * k].reshape(b, c, gh, k, gw, k)
    if reduce == "max":
        return windows.max((3, 5))
    return windows.mean((3, 5), dtype=np.float32)
