"""Torch custom ops for the binary products of a deploy-form BHViT (``bhvit::binary_*``).

Each op is one node in ``torch.export`` graphs (the converters in :mod:`bhvit.compile.lower` turn it into the
bit-packed kernels) and its eager implementation is the exact function the kernels compute:

* ``binary_linear(x, signs[N,K], threshold[K]?, scale[N], bias[N]?)`` =
  ``(sign(x - threshold) @ signs^T) * scale + bias`` with ``sign(v) = +1`` iff ``v >= 0`` i.e. ``x >= threshold``;
* ``binary_conv2d`` the same with ``conv2d(sign(x - threshold), signs)``, zero padding applied after the sign;
* ``binary_qk(q, k)`` = ``sign(q) @ sign(k)^T`` and ``binary_av(levels, v)`` = ``levels @ sign(v)``.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["binary_linear", "binary_conv2d", "binary_qk", "binary_av", "sign_at"]


def sign_at(x: torch.Tensor, threshold: torch.Tensor | None, channel_dim: int) -> torch.Tensor:
    """``+1`` where ``x >= threshold`` (per channel on ``channel_dim``) else ``-1``."""
    if threshold is None:
        keep = x >= 0
    else:
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        keep = x >= threshold.view(shape)
    return torch.where(keep, 1.0, -1.0).to(x.dtype)


def _epilogue(y: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, channel_dim: int) -> torch.Tensor:
    shape = [1] * y.dim()
    shape[channel_dim] = -1
    y = y * scale.view(shape)
    return y if bias is None else y + bias.view(shape)


@torch.library.custom_op("bhvit::binary_linear", mutates_args=())
def binary_linear(x: torch.Tensor, signs: torch.Tensor, threshold: torch.Tensor | None, scale: torch.Tensor,
                  bias: torch.Tensor | None) -> torch.Tensor:
    return _epilogue(F.linear(sign_at(x, threshold, -1), signs), scale, bias, -1)


@binary_linear.register_fake
def _(x, signs, threshold, scale, bias):
    return x.new_empty((*x.shape[:-1], signs.shape[0]))


@torch.library.custom_op("bhvit::binary_conv2d", mutates_args=())
def binary_conv2d(x: torch.Tensor, signs: torch.Tensor, threshold: torch.Tensor | None, scale: torch.Tensor,
                  bias: torch.Tensor | None, stride: list[int], padding: list[int], dilation: list[int],
                  groups: int) -> torch.Tensor:
    y = F.conv2d(sign_at(x, threshold, 1), signs, None, stride, padding, dilation, groups)
    return _epilogue(y, scale, bias, 1)


@binary_conv2d.register_fake
def _(x, signs, threshold, scale, bias, stride, padding, dilation, groups):
    kh, kw = signs.shape[-2:]
    size = [(x.shape[2 + i] + 2 * padding[i] - dilation[i] * ((kh, kw)[i] - 1) - 1) // stride[i] + 1 for i in (0, 1)]
    return x.new_empty((x.shape[0], signs.shape[0], *size))


@torch.library.custom_op("bhvit::binary_qk", mutates_args=())
def binary_qk(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return sign_at(q, None, -1) @ sign_at(k, None, -1).transpose(-2, -1)


@binary_qk.register_fake
def _(q, k):
    return q.new_empty((*q.shape[:-1], k.shape[-2]))


@torch.library.custom_op("bhvit::binary_av", mutates_args=())
def binary_av(levels: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return levels @ sign_at(v, None, -1)


@binary_av.register_fake
def _(levels, v):
    return levels.new_empty((*levels.shape[:-1], v.shape[-1]))
