"""Per-channel FP layers of BHViT: learned shifts, RPReLU and LayerScale.

Each takes ``channel_dim``: ``-1`` for tokens ``(B, N, C)``, ``1`` for maps ``(B, C, H, W)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LearnableShift", "RPReLU", "LayerScale", "rprelu"]


def _shape(x: torch.Tensor, channel_dim: int) -> tuple[int, ...]:
    if channel_dim in (-1, x.dim() - 1):
        return (-1,)
    return (-1,) + (1,) * (x.dim() - 1 - channel_dim)


class LearnableShift(nn.Module):
    """``x + b_c`` (the RSign-style threshold placed before a sign), ``b`` initialised to 0."""

    def __init__(self, channels: int, channel_dim: int = -1):
        super().__init__()
        self.channel_dim = channel_dim
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(_shape(x, self.channel_dim))


def rprelu(x: torch.Tensor, shift_in: torch.Tensor, slope: torch.Tensor, shift_out: torch.Tensor) -> torch.Tensor:
    """``PReLU(x - shift_in; slope) + shift_out`` with parameters broadcast against ``x``."""
    y = x - shift_in
    return torch.where(y >= 0, y, y * slope) + shift_out


class RPReLU(nn.Module):
    """``RPReLU(x) = PReLU_c(x - mu_c) + zeta_c`` (ReActNet), mu = zeta = 0 and slope 0.25 at init."""

    def __init__(self, channels: int, channel_dim: int = -1):
        super().__init__()
        self.channel_dim = channel_dim
        self.shift_in = nn.Parameter(torch.zeros(channels))
        self.slope = nn.Parameter(torch.full((channels,), 0.25))
        self.shift_out = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = _shape(x, self.channel_dim)
        return rprelu(x, self.shift_in.view(s), self.slope.view(s), self.shift_out.view(s))

    def act_rows(self) -> torch.Tensor:
        """The parameters as the (3, C) ``act`` argument of the deploy ops: shift_in, slope, shift_out rows."""
        return torch.stack([self.shift_in, self.slope, self.shift_out]).detach().float().contiguous()


class LayerScale(nn.Module):
    """``x * alpha_c + beta_c`` with ``alpha`` initialised to ``init`` and ``beta`` to 0."""

    def __init__(self, channels: int, init: float = 0.1, channel_dim: int = -1):
        super().__init__()
        self.channel_dim = channel_dim
        self.alpha = nn.Parameter(torch.full((channels,), float(init)))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = _shape(x, self.channel_dim)
        return x * self.alpha.view(s) + self.beta.view(s)
