"""Weight-free shift branches of BHViT (``--shift3`` / ``--shift5``), on maps ``(B, C, H, W)``. Rolls are circular."""

from __future__ import annotations

import torch
from torch import nn

from .elementwise import LayerScale

__all__ = ["circular_shift", "AxisShiftMean", "ChannelGroupShift", "ShiftBranches"]


def circular_shift(x: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    """``torch.roll(x, shift, dim)`` written as two slices and a concat.

    Same values; exported graphs get plain slices instead of the gather that ``roll`` lowers to.
    """
    shift %= x.shape[dim]
    if shift == 0:
        return x
    return torch.cat([x.narrow(dim, x.shape[dim] - shift, shift), x.narrow(dim, 0, x.shape[dim] - shift)], dim)


class AxisShiftMean(nn.Module):
    """Mean of the rolls of ``x`` by ``-reach..reach`` along one spatial axis (``dim`` 2 = H, 3 = W)."""

    def __init__(self, reach: int, dim: int):
        super().__init__()
        self.reach, self.dim = reach, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x
        for d in range(1, self.reach + 1):
            total = total + circular_shift(x, d, self.dim) + circular_shift(x, -d, self.dim)
        return total * (1.0 / (2 * self.reach + 1))


class ChannelGroupShift(nn.Module):
    """Split channels into 4 groups and roll them by +s along H, -s along H, +s along W, -s along W."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.chunk(4, dim=1)
        s = self.step
        return torch.cat(
            [
                circular_shift(g[0], s, 2),
                circular_shift(g[1], -s, 2),
                circular_shift(g[2], s, 3),
                circular_shift(g[3], -s, 3),
            ],
            dim=1,
        )


class ShiftBranches(nn.Module):
    """Sum of the enabled shift branches, each behind its own LayerScale (alpha init 0, so branches start off)."""

    def __init__(self, channels: int, shift3: bool = True, shift5: bool = True):
        super().__init__()
        ops = []
        for reach, on in ((1, shift3), (2, shift5)):
            if on:
                ops += [AxisShiftMean(reach, 2), AxisShiftMean(reach, 3), ChannelGroupShift(reach)]
        self.ops = nn.ModuleList(ops)
        self.scales = nn.ModuleList(LayerScale(channels, 0.0, channel_dim=1) for _ in ops)

    def forward(self, z: torch.Tensor) -> torch.Tensor | None:
        out = None
        for op, scale in zip(self.ops, self.scales):
            y = scale(op(z))
            out = y if out is None else out + y
        return out
