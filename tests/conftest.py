"""Shared pytest set-up: small thread counts for the 2-core CI machine and a trained-like model fixture."""

import os

import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")


@pytest.fixture
def perturbed():
    """Build a trained-like model (every parameter and buffer moved away from its init, see
    :func:`bhvit.models.perturb_like_trained`), in eval mode: ``perturbed(name="test_bhvit", **build_model kwargs)``."""
    import torch
    from bhvit.models import build_model, perturb_like_trained

    def build(name: str = "test_bhvit", **kw) -> torch.nn.Module:
        torch.manual_seed(0)
        return perturb_like_trained(build_model(name, **kw), seed=0)

    return build
