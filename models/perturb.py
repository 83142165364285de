"""Move every parameter and buffer of a model away from its initial value, as training would.

A freshly initialised BHViT hides deployment bugs: the shift branches' LayerScales are 0 (those branches add
exactly 0), BatchNorms have identity statistics (their folds are close to no-ops) and the attention quantisers
are uninitialised. Compiler tests and the verification measurements use this "trained-like" form instead.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers.quant import AttentionQuantizer

__all__ = ["perturb_like_trained"]


@torch.no_grad()
def perturb_like_trained(model: nn.Module, seed: int = 0, scale: float = 0.2) -> nn.Module:
    """Perturb ``model`` in place (and return it in eval mode): vectors (biases, shifts, LayerScales, RPReLU and
    BN affine parameters) get N(0, ``scale``) added, weight tensors ``scale`` times their std; BN statistics are
    random (means N(0, 0.2), variances U(0.5, 2)); attention quantisers get per-head steps U(0.05, 0.5) and zero
    points N(0, 0.1), marked initialised."""
    gen = torch.Generator().manual_seed(seed)

    def noise(t: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(t.shape, generator=gen, dtype=t.dtype) * std

    quantizers = [m for m in model.modules() if isinstance(m, AttentionQuantizer)]
    skip = {id(p) for q in quantizers for p in q.parameters()}
    for p in model.parameters():
        if id(p) not in skip:
            p.add_(noise(p, scale if p.dim() <= 1 else scale * float(p.std())))
    for q in quantizers:
        q.alpha.copy_(torch.rand(q.alpha.shape, generator=gen) * 0.45 + 0.05)
        q.zero_point.copy_(noise(q.zero_point, 0.1))
        q.initialized.fill_(True)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(noise(m.running_mean, 0.2))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
            m.num_batches_tracked.fill_(1000)
    return model.eval()
