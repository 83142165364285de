"""Verification: the tolerance passes the folded deploy form and catches a missing fold or a wrong bit order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bhvit.compile.deploy import to_deploy
from bhvit.compile.verify import RTOL, compare, verify
from bhvit.models import build_model
from bhvit.models.layers import EAGER
from torch import nn


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("test_bhvit", precision="binary")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _predict(model: nn.Module):
    return lambda x: model(torch.from_numpy(x)).detach().numpy()


def test_compare_needs_tolerance_and_same_top1():
    ref = np.array([[3.0, 1.0, -2.0], [0.5, 2.0, 1.0]], np.float32)
    assert compare(ref, ref + 0.5 * RTOL * 3, "x").passed
    assert not compare(ref, ref + 2 * RTOL * 3, "x").passed
    swapped = ref.copy()
    swapped[1, 2] = 2.0 + RTOL  # within tolerance, but the top-1 moves
    result = compare(ref, swapped, "x")
    assert not result.passed and result.top1_agree == 0.5


def test_folded_deploy_form_passes():
    model = _model()
    assert verify(model, _predict(to_deploy(model, EAGER)), (1, 3, 64, 64), runs_on="deploy").passed


@pytest.mark.parametrize("bug", ["bias dropped", "signs reversed"])
def test_a_wrong_fold_or_bit_order_fails(bug):
    model = _model()
    deploy = to_deploy(model, EAGER)
    layer = next(m for m in deploy.modules() if getattr(m, "signs", None) is not None and m.bias is not None)
    with torch.no_grad():
        if bug == "bias dropped":  # a BatchNorm shift that did not fold
            layer.bias.zero_()
        else:  # K reversed: what a wrong bit order inside the packed words would compute
            layer.signs.copy_(layer.signs.flip(-1))
    assert not verify(model, _predict(deploy), (1, 3, 64, 64), runs_on="deploy").passed
