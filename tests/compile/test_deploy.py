"""The deploy form computes the model's function with BN/alpha/shift folded into the binary ops."""

from __future__ import annotations

import pytest
import torch
from bhvit.compile.deploy import (
    FOLDS,
    DeployAttentionProducts,
    DeployConv2d,
    DeployDenseBranch,
    DeployLinear,
    DeployMLP,
    PatchifyConv,
    to_deploy,
)
from bhvit.compile.ops import EAGER
from bhvit.models import build_model
from bhvit.models.bhvit import BinaryMLP
from bhvit.models.config import PrecisionCfg
from torch import nn

FP_FC2 = PrecisionCfg("binary", (("*.mlp.fc2", "fp32"),))  # fc1 binary, fc2 FP: the MLP keeps its FP glue


def _perturbed(**kw) -> nn.Module:
    """A test_bhvit whose shifts, BN statistics and affine parameters are not at their init values."""
    torch.manual_seed(0)
    model = build_model("test_bhvit", **kw)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.2)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize(
    "kw",
    [
        dict(precision="binary"),
        dict(precision="fp32"),
        dict(precision="binary", fp_downsample=True),
        dict(precision=FP_FC2),
    ],
    ids=["binary", "fp32", "fpds", "fp-fc2"],
)
@pytest.mark.parametrize("ops", ["custom", "eager"])
def test_deploy_form_matches_model(kw, ops):
    model = _perturbed(**kw)
    deploy = to_deploy(model) if ops == "custom" else to_deploy(model, EAGER)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref, got = model(x), deploy(x)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_binary_glue_is_folded():
    deploy = to_deploy(_perturbed(precision="binary"))
    linears = [m for m in deploy.modules() if isinstance(m, DeployLinear)]
    convs = [m for m in deploy.modules() if isinstance(m, DeployConv2d)]
    assert linears and convs and sum(isinstance(m, DeployAttentionProducts) for m in deploy.modules()) == 2
    assert all(m.shift is not None and m.bias is not None for m in linears)  # shift -> pack, BN -> epilogue
    assert all(m.shift is not None for m in convs)
    # every shift and BN that FOLDS names is gone from the FP graph; the MLPs and q/k/v/out branches went further
    parents = [m for m in deploy.modules() if type(m) in FOLDS]
    assert len(parents) == 2 + 3  # 2 MSGDC blocks, downsamples
    assert sum(isinstance(m, DeployMLP) for m in deploy.modules()) == 4
    assert sum(isinstance(m, DeployDenseBranch) for m in deploy.modules()) == 2 * 4  # 2 MSMHA blocks, q/k/v/out
    for parent in parents:
        for shift_name, _, norm_name in FOLDS[type(parent)]:
            assert isinstance(getattr(parent, shift_name), nn.Identity)
            if norm_name is not None:
                assert isinstance(getattr(parent, norm_name), nn.Identity)


def _binary_nodes(model: nn.Module, op: str = "binary_linear") -> list[torch.fx.Node]:
    graph = torch.export.export(to_deploy(model), (torch.zeros(1, 3, 64, 64),)).graph
    return [n for n in graph.nodes if n.op == "call_function" and op in str(n.target)]


def test_binary_mlp_and_branch_shortcuts_and_acts_run_in_the_dense_epilogue():
    model = _perturbed(precision="binary")
    nodes = _binary_nodes(model)
    fused = [n for n in nodes if len(n.args) > 6 and n.args[5] is not None and n.args[6] is not None]
    assert len(fused) == len(nodes) == 2 * 4  # q/k/v/out of the 2 MSMHA
    mlps = _binary_nodes(model, "binary_mlp")
    assert len(mlps) == 4  # one node per MLP: fc1, the pooling and fc2 with both shortcuts and RPReLUs
    assert all(n.args[5] is not None and n.args[10] is not None for n in mlps)


def test_mlp_with_an_fp_linear_keeps_its_fp_glue():
    model = _perturbed(precision=FP_FC2)
    deploy = to_deploy(model)
    assert not any(isinstance(m, DeployMLP) for m in deploy.modules())
    mlps = [m for m in deploy.modules() if isinstance(m, BinaryMLP)]
    assert len(mlps) == 4 and all(isinstance(m.fc1, DeployLinear) and not isinstance(m.fc2, DeployLinear) for m in mlps)
    fused = [n for n in _binary_nodes(model) if len(n.args) > 5]
    assert len(fused) == 2 * 4 and all(n.meta["val"].shape == n.args[0].meta["val"].shape for n in fused)  # q/k/v/out


def test_fp32_model_is_left_as_is():
    model = _perturbed(precision="fp32")
    deploy = to_deploy(model)
    assert not any(isinstance(m, (DeployLinear, DeployConv2d, DeployAttentionProducts)) for m in deploy.modules())


@pytest.mark.parametrize("conv", [nn.Conv2d(3, 8, 4, stride=4), nn.Conv2d(8, 16, 2, stride=2, bias=False)])
def test_patchify_conv_equals_the_strided_conv(conv):
    x = torch.randn(2, conv.in_channels, 12, 16)
    assert PatchifyConv.applies(conv)
    with torch.no_grad():
        assert torch.allclose(PatchifyConv(conv)(x), conv(x), atol=1e-5)
    assert not PatchifyConv.applies(nn.Conv2d(8, 8, 3, padding=1))
    assert not PatchifyConv.applies(nn.Conv2d(8, 8, 2, stride=2, groups=2))


def test_stem_and_fp_downsampling_become_matmuls():
    deploy = to_deploy(_perturbed(fp_downsample=True))
    assert isinstance(deploy.stem.conv, PatchifyConv)
    assert all(isinstance(d.conv, PatchifyConv) for d in deploy.downsamples)
    assert isinstance(to_deploy(_perturbed()).downsamples[0].conv, DeployConv2d)  # binary ones keep the kernel
