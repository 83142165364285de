"""Verification: the criterion passes the folded deploy form and catches a missing fold or a wrong bit order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bhvit.compile.deploy import to_deploy
from bhvit.compile.verify import MAX_RTOL, TIGHT_RTOL, compare, verify
from bhvit.device.artifact import PreprocessCfg
from bhvit.models import build_model, perturb_like_trained
from bhvit.models.layers import EAGER
from torch import nn


def _model() -> nn.Module:
    torch.manual_seed(0)
    return perturb_like_trained(build_model("test_bhvit", precision="binary"), seed=0)


def _predict(model: nn.Module):
    return lambda x: model(torch.from_numpy(x)).detach().numpy()


PRE = PreprocessCfg(input_size=64, resize=73, crop=64)


def test_compare_tolerates_flips_but_needs_one_exact_input_and_no_far_one():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 5, (11, 10))
    exact = ref + rng.normal(0, 1e-6, ref.shape)
    assert compare(ref, exact, "x").passed
    flipped = exact.copy()
    flipped[1:] += 0.5 * MAX_RTOL * np.abs(ref[1:]).max(1, keepdims=True)  # flips on all inputs but one
    result = compare(ref, flipped, "x")
    assert result.passed and result.clean_inputs == 1 and result.median_rel_err > TIGHT_RTOL
    flipped[0] += 10 * TIGHT_RTOL * np.abs(ref[0]).max()  # no input exact any more: a systematic error
    result = compare(ref, flipped, "x")
    assert not result.passed and result.top1_agree == 1.0  # same top-1 everywhere, and still refused
    outlier = exact.copy()
    outlier[0] += 2 * MAX_RTOL * np.abs(ref[0]).max()  # one input far off
    assert not compare(ref, outlier, "x").passed


def test_folded_deploy_form_passes():
    model = _model()
    assert verify(model, _predict(to_deploy(model, EAGER)), (1, 3, 64, 64), "deploy", PRE).passed


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
    assert not verify(model, _predict(deploy), (1, 3, 64, 64), "deploy", PRE).passed
