"""Quantisers of BHViT (``models/README.md``, "Quantisers").

Sign convention: ``sign(0) = +1`` everywhere (activations and weights). That is what a bit-packed kernel computes
(bit set <=> value >= 0), so the PyTorch model and a compiled artifact agree exactly; PyTorch's ``torch.sign``
would give 0 there.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["sign_pm1", "ApproxSign", "SignQuantizer", "WeightQuantizer", "AttentionQuantizer"]


def sign_pm1(x: torch.Tensor) -> torch.Tensor:
    """Forward sign with ``sign(0) = +1``: ``1`` where ``x >= 0`` else ``-1``, in the dtype of ``x``."""
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(x >= 0, one, -one)


class ApproxSign(torch.autograd.Function):
    """Bi-Real ApproxSign: forward ``sign_pm1(x)``.

    Backward: ``g*(2+2x)`` on [-1,0], ``g*(2-2x)`` on (0,1], 0 outside.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign_pm1(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        slope = torch.where(x <= 0, 2 + 2 * x, 2 - 2 * x)
        return grad * torch.where(x.abs() <= 1, slope, torch.zeros_like(x))


class SignQuantizer(nn.Module):
    """Activation quantiser ``"approx_sign"``: forward sign (0 -> +1), backward ApproxSign (Bi-Real Net, Liu 2018).

    Outside autograd (eval, export) it is a plain ``where`` so the exported graph has no custom function.
    """

    precision = "binary"
    alias = "approx_sign"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return ApproxSign.apply(x)
        return sign_pm1(x)


def _ste(value: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
    """Forward ``value``, backward the gradient of ``proxy``."""
    return (value - proxy).detach() + proxy


class WeightQuantizer(nn.Module):
    """Weight quantiser: forward ``alpha_o * sign(W - rowmean(W))`` per output channel ``o``.

    ``alpha_o = mean|W_o|`` of the raw latent weights (detached). Backward (``"clamp_ste"``): straight-through via
    ``clamp(W_c, -1, 1)``. With ``recu=True`` (``"recu"``, ReCU, Xu et al. 2021, linear layers only):
    ``W_s = W_c * 2*sqrt(2) / std_row`` and the gradient flows through ``clamp(W_s, -tau, tau)`` with
    ``tau = -mean|W_s| * ln(2 - 2*0.92)`` (detached). Rows are all axes but the first.
    """

    precision = "binary"

    def __init__(self, recu: bool = False):
        super().__init__()
        self.recu = recu
        self.alias = "recu" if recu else "clamp_ste"

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        """Per-output-channel ``alpha`` (shape ``(out,)``)."""
        return w.detach().flatten(1).abs().mean(1)

    def sign(self, w: torch.Tensor) -> torch.Tensor:
        """``sign_pm1(W - rowmean(W))`` with the shape of ``w``: the bits a kernel stores."""
        flat = w.detach().flatten(1)
        return sign_pm1(flat - flat.mean(1, keepdim=True)).view_as(w)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and w.requires_grad):
            # Outside autograd only the forward value matters; the straight-through proxies shape gradients only.
            return self.scale(w).view(-1, *([1] * (w.dim() - 1))) * self.sign(w)
        flat = w.flatten(1)
        centred = flat - flat.mean(1, keepdim=True)
        if self.recu:
            std = torch.sqrt(flat.var(1, keepdim=True, unbiased=True) + 1e-5)
            standard = centred * (2 * math.sqrt(2)) / std
            tau = (-standard.abs().mean() * math.log(2 - 2 * 0.92)).detach()
            proxy = torch.clamp(standard, -tau, tau)
        else:
            proxy = torch.clamp(centred, -1, 1)
        bits = _ste(sign_pm1(centred), proxy)
        return (self.scale(w)[:, None] * bits).view_as(w)


class AttentionQuantizer(nn.Module):
    """Learned 4-level quantiser of scaled attention probabilities ("quantisation decomposition", BHViT).

    Input ``x = levels * softmax`` of shape ``(B, heads, n, n)``. Forward per head ``h``:
    ``level = clamp(round(x / alpha_h + z_h), 0, levels)``, output ``level * alpha_h`` (``z_h`` is not subtracted).
    Rounding is straight-through; ``alpha`` and ``z`` get LSQ gradient scaling ``heads / sqrt(numel * levels)``.
    ``alpha`` and ``z`` are initialised on the first training forward to ``2*mean|x|/sqrt(levels)`` and ``0.1*min(x)``.
    """

    precision = "binary"

    def __init__(self, heads: int, levels: int = 3):
        super().__init__()
        self.levels = levels
        self.alpha = nn.Parameter(torch.ones(heads))
        self.zero_point = nn.Parameter(torch.zeros(heads))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        per_head = x.transpose(0, 1).flatten(1)
        self.alpha.copy_(2 * per_head.abs().mean(1) / math.sqrt(self.levels))
        self.zero_point.copy_(0.1 * per_head.min(1).values)
        self.initialized.fill_(True)

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(levels, alpha)``: integer-valued levels in ``0..levels`` and the per-head scale (B, h, 1, 1)."""
        if self.training and not bool(self.initialized):
            self._initialize(x)
        g = x.shape[1] / math.sqrt(x.numel() * self.levels)
        alpha = _ste(self.alpha, self.alpha * g).view(1, -1, 1, 1)
        zero = _ste(self.zero_point, self.zero_point * g).view(1, -1, 1, 1)
        y = x / alpha + zero
        level = torch.clamp(_ste(torch.round(y), y), 0, self.levels)
        return level, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level, alpha = self.quantize(x)
        return level * alpha
