"""Weight-free shift branches of BHViT (``--shift3`` / ``--shift5``), on maps ``(B, C, H, W)``. Rolls are circular.

Every branch is linear in its input, a per-channel stencil of ``4 R + 1`` taps in a cross (:func:`stencil_offsets`),
which is what deploy forms compute (``stencil_add`` in :mod:`.deploy_ops`): each op returns its taps (``taps``),
:meth:`ShiftBranches.stencil` their LayerScale-weighted sum.
"""

from __future__ import annotations

import torch
from torch import nn

from .elementwise import LayerScale

__all__ = [
    "circular_shift",
    "stencil_offsets",
    "stencil_taps",
    "stencil_reach",
    "AxisShiftMean",
    "ChannelGroupShift",
    "ShiftBranches",
]


def stencil_offsets(reach: int) -> list[tuple[int, int]]:
    """The ``(dh, dw)`` offsets of a cross stencil of ``reach``, in tap order: the centre, then ``dh`` and then
    ``dw`` in ``-reach..-1, 1..reach``. Tap ``(dh, dw)`` reads ``x[(h + dh) mod H, (w + dw) mod W]``."""
    steps = [d for d in range(-reach, reach + 1) if d]
    return [(0, 0), *((d, 0) for d in steps), *((0, d) for d in steps)]


def stencil_taps(reach: int) -> int:
    """Taps of a cross stencil of ``reach``: ``4 reach + 1``."""
    return 4 * reach + 1


def stencil_reach(taps: int) -> int:
    """The reach of a cross stencil of ``taps`` taps (:func:`stencil_taps` inverted); ValueError for no such count."""
    if taps < 1 or (taps - 1) % 4:
        raise ValueError(f"{taps} taps are no cross stencil (4 reach + 1 taps)")
    return (taps - 1) // 4


def _tap(reach: int, offset: int, dim: int) -> int:
    """Tap index of reading ``offset`` away along ``dim`` (2 = H, 3 = W); a roll by ``s`` reads offset ``-s``."""
    return stencil_offsets(reach).index((offset, 0) if dim == 2 else (0, offset)) if offset else 0


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

    def taps(self, channels: int, reach: int) -> torch.Tensor:
        """This op as ``(channels, 4 reach + 1)`` stencil taps (``reach >= self.reach``)."""
        taps = torch.zeros(channels, stencil_taps(reach))
        for d in range(-self.reach, self.reach + 1):
            taps[:, _tap(reach, d, self.dim)] = 1.0 / (2 * self.reach + 1)
        return taps


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

    @property
    def reach(self) -> int:
        """The farthest offset this op reads."""
        return self.step

    def taps(self, channels: int, reach: int) -> torch.Tensor:
        """This op as ``(channels, 4 reach + 1)`` stencil taps (``reach >= self.step``)."""
        taps = torch.zeros(channels, stencil_taps(reach))
        moves = ((-self.step, 2), (self.step, 2), (-self.step, 3), (self.step, 3))
        for group, (offset, dim) in zip(torch.arange(channels).chunk(4), moves):  # the groups of forward's chunk
            taps[group, _tap(reach, offset, dim)] = 1.0
        return taps


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

    @property
    def reach(self) -> int:
        """The farthest offset any branch reads (0 without branches)."""
        return max((op.reach for op in self.ops), default=0)

    @torch.no_grad()
    def stencil(self, channels: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward(z)`` as ``taps`` (channels, 4 R + 1) and ``bias`` (channels,) on ``device``, ``R = reach``:
        ``forward(z)[c, h, w] = bias[c] + sum_t taps[c, t] * z[c, h + dh_t, w + dw_t]`` (:func:`stencil_offsets`)."""
        reach = self.reach
        taps, bias = torch.zeros(channels, stencil_taps(reach), device=device), torch.zeros(channels, device=device)
        for op, scale in zip(self.ops, self.scales):
            taps += scale.alpha.detach().to(device)[:, None] * op.taps(channels, reach).to(device)
            bias += scale.beta.detach().to(device)
        return taps, bias
