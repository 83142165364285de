"""Shared pytest set-up: small thread counts for the 2-core CI machine and a trained-like model fixture."""

import os

import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")


@pytest.fixture
def perturbed():
    """Build a model whose every 1-D parameter (shifts, RPReLUs, LayerScales, BN affine, ...) and BN statistics are
    moved away from their init values, in eval mode: ``perturbed(name="test_bhvit", **build_model kwargs)``."""
    import torch
    from bhvit.models import build_model
    from torch import nn

    def build(name: str = "test_bhvit", **kw) -> nn.Module:
        torch.manual_seed(0)
        model = build_model(name, **kw)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 1:
                    p.add_(torch.randn_like(p) * 0.2)
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.running_mean.normal_(0, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
        return model.eval()

    return build
