"""The torch definition of the ops that deploy forms call: custom ops ``bhvit::binary_*``, ``bhvit::patch_conv`` and
``bhvit::stencil_add``.

Each op is one node in ``torch.export`` graphs (the compiler turns it into the bit-packed kernels) and its eager
implementation is the exact function the kernels compute:

* ``binary_linear(x, signs[N,K], shift[K]?, scale[N], bias[N]?, residual[...,R]?, act[3,N]?)`` =
  ``rprelu((sign(x + shift) @ signs^T) * scale + bias + tile(residual), act)`` with ``sign(v) = +1`` iff ``v >= 0``
  (the kernels' ``threshold``), ``tile(r)[..., n] = r[..., n % R]`` (``R`` divides ``N``) and ``act`` the
  ``shift_in``, ``slope``, ``shift_out`` rows of an RPReLU (each optional term is skipped when ``None``);
* ``binary_mlp(z, fc1..., act1, fc2..., act2, ratio)`` the binary MLP: ``h = binary_linear(z, fc1..., z, act1)``,
  then ``binary_linear(h, fc2..., pool(h), act2)`` with ``pool`` the mean over groups of ``ratio`` consecutive
  channels (one node, so the kernels never write ``h``);
* ``binary_conv2d`` the same with ``conv2d(sign(x + shift), signs)``, zero padding applied after the sign;
* ``binary_qk(q, k)`` = ``sign(q) @ sign(k)^T`` and ``binary_av(levels, v)`` = ``levels @ sign(v)``;
* ``patch_conv(x, weight[K,N], bias[N]?, k)`` (FP32) = ``conv2d(x, weight, bias, stride=k)`` for a ``k x k`` kernel
  stored as a ``(K, N)`` matrix, ``K`` ordered ``(c * k + kh) * k + kw``: a matmul of the map's non-overlapping
  patches, one node, so the compiler's kernel reads the map in place and writes the NCHW result;
* ``stencil_add(x, tokens, taps[C,T], token_scale[C], bias[C])`` (FP32) = ``sum_t taps[c, t] * x[c, h + dh_t,
  w + dw_t]`` (circular; the cross of :func:`~.shift.stencil_offsets`, ``T = 4 R + 1``) ``+ token_scale[c] *
  tokens[h * W + w, c] + bias[c]`` on a map ``x`` (B, C, H, W) and tokens (B, H * W, C): a block's residual, shift
  branches and token-major MLP output in one node, so the compiler's kernel writes the map once.

The eager functions also serve as the ops' fake implementations (output shapes on fake tensors), so no shape rule is
written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .elementwise import rprelu
from .quant import sign_pm1
from .shift import circular_shift, stencil_offsets, stencil_reach

__all__ = [
    "binary_linear",
    "binary_mlp",
    "binary_conv2d",
    "binary_qk",
    "binary_av",
    "patch_conv",
    "stencil_add",
    "shifted_sign",
    "BinaryOps",
    "CUSTOM",
    "EAGER",
]


def shifted_sign(x: torch.Tensor, shift: torch.Tensor | None, channel_dim: int) -> torch.Tensor:
    """``sign_pm1(x + shift)`` with ``shift`` per channel on ``channel_dim`` (``None``: no shift)."""
    if shift is not None:
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        x = x + shift.view(shape)
    return sign_pm1(x)


def _epilogue(y: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, channel_dim: int) -> torch.Tensor:
    shape = [1] * y.dim()
    shape[channel_dim] = -1
    y = y * scale.view(shape)
    return y if bias is None else y + bias.view(shape)


def linear_eager(
    x: torch.Tensor,
    signs: torch.Tensor,
    shift: torch.Tensor | None,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor | None = None,
    act: torch.Tensor | None = None,
) -> torch.Tensor:
    y = _epilogue(F.linear(shifted_sign(x, shift, -1), signs), scale, bias, -1)
    if residual is not None:
        y = y + residual.repeat(*[1] * (residual.dim() - 1), y.shape[-1] // residual.shape[-1])
    return y if act is None else rprelu(y, *act)  # act rows: shift_in, slope, shift_out on the last axis


binary_linear = torch.library.custom_op("bhvit::binary_linear", linear_eager, mutates_args=())
binary_linear.register_fake(linear_eager)


def mlp_eager(
    z: torch.Tensor,
    signs1: torch.Tensor,
    shift1: torch.Tensor | None,
    scale1: torch.Tensor,
    bias1: torch.Tensor | None,
    act1: torch.Tensor,
    signs2: torch.Tensor,
    shift2: torch.Tensor | None,
    scale2: torch.Tensor,
    bias2: torch.Tensor | None,
    act2: torch.Tensor,
    ratio: int,
) -> torch.Tensor:
    h = linear_eager(z, signs1, shift1, scale1, bias1, z, act1)
    pooled = h.unflatten(-1, (-1, ratio)).mean(-1)
    return linear_eager(h, signs2, shift2, scale2, bias2, pooled, act2)


binary_mlp = torch.library.custom_op("bhvit::binary_mlp", mlp_eager, mutates_args=())
binary_mlp.register_fake(mlp_eager)


def conv2d_eager(
    x: torch.Tensor,
    signs: torch.Tensor,
    shift: torch.Tensor | None,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
) -> torch.Tensor:
    y = F.conv2d(shifted_sign(x, shift, 1), signs, None, stride, padding, dilation, groups)
    return _epilogue(y, scale, bias, 1)


binary_conv2d = torch.library.custom_op("bhvit::binary_conv2d", conv2d_eager, mutates_args=())
binary_conv2d.register_fake(conv2d_eager)


def qk_eager(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return shifted_sign(q, None, -1) @ shifted_sign(k, None, -1).transpose(-2, -1)


binary_qk = torch.library.custom_op("bhvit::binary_qk", qk_eager, mutates_args=())
binary_qk.register_fake(qk_eager)


def av_eager(levels: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return levels @ shifted_sign(v, None, -1)


binary_av = torch.library.custom_op("bhvit::binary_av", av_eager, mutates_args=())
binary_av.register_fake(av_eager)


def patch_conv_eager(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k: int) -> torch.Tensor:
    return F.conv2d(x, weight.t().reshape(weight.shape[1], x.shape[1], k, k), bias, stride=k)


patch_conv = torch.library.custom_op("bhvit::patch_conv", patch_conv_eager, mutates_args=())
patch_conv.register_fake(patch_conv_eager)


def stencil_add_eager(
    x: torch.Tensor, tokens: torch.Tensor, taps: torch.Tensor, token_scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    b, c, h, w = x.shape
    out = tokens.transpose(1, 2).reshape(b, c, h, w) * token_scale.view(-1, 1, 1) + bias.view(-1, 1, 1)
    for t, (dh, dw) in enumerate(stencil_offsets(stencil_reach(taps.shape[1]))):
        out = out + circular_shift(circular_shift(x, -dh, 2), -dw, 3) * taps[:, t].view(-1, 1, 1)
    return out


stencil_add = torch.library.custom_op("bhvit::stencil_add", stencil_add_eager, mutates_args=())
stencil_add.register_fake(stencil_add_eager)


@dataclass(frozen=True)
class BinaryOps:
    """One implementation of the ops deploy forms call (the binary products, the FP patch conv and the blocks'
    stencil add): the custom ops (for torch.export) or plain torch (for ONNX)."""

    linear: Callable
    mlp: Callable
    conv2d: Callable
    qk: Callable
    av: Callable
    patch_conv: Callable
    stencil_add: Callable


CUSTOM = BinaryOps(binary_linear, binary_mlp, binary_conv2d, binary_qk, binary_av, patch_conv, stencil_add)
EAGER = BinaryOps(linear_eager, mlp_eager, conv2d_eager, qk_eager, av_eager, patch_conv_eager, stencil_add_eager)
