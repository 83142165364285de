"""The deploy form computes the model's function with BN/alpha/shift folded into the binary ops."""

from __future__ import annotations

import pytest
import torch
from bhvit.compile.deploy import to_deploy
from bhvit.models.bhvit import BinaryMLP, DeployAttentionProducts, DeployDenseBranch, DeployMLP, Downsample
from bhvit.models.config import PrecisionCfg
from bhvit.models.layers import EAGER, DeployConv2d, DeployLinear, FoldError, PatchifyConv
from torch import nn
from torch.nn import functional as F

FP_FC2 = PrecisionCfg("binary", (("*.mlp.fc2", "fp32"),))  # fc1 binary, fc2 FP: the MLP keeps its FP glue


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
def test_deploy_form_matches_model(perturbed, kw, ops):
    model = perturbed(**kw)
    deploy = to_deploy(model) if ops == "custom" else to_deploy(model, EAGER)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref, got = model(x), deploy(x)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_binary_glue_is_folded(perturbed):
    deploy = to_deploy(perturbed(precision="binary"))
    linears = [m for m in deploy.modules() if isinstance(m, DeployLinear)]
    convs = [m for m in deploy.modules() if isinstance(m, DeployConv2d)]
    assert linears and convs and sum(isinstance(m, DeployAttentionProducts) for m in deploy.modules()) == 2
    assert all(m.shift is not None and m.bias is not None for m in linears)  # shift -> pack, BN -> epilogue
    assert all(m.shift is not None for m in convs)
    # every shift and BN that a block's folds name is gone from the FP graph; MLPs and q/k/v/out branches went further
    parents = [m for m in deploy.modules() if hasattr(m, "folds")]
    assert len(parents) == 2 + 3  # 2 MSGDC blocks, downsamples
    assert sum(isinstance(m, DeployMLP) for m in deploy.modules()) == 4
    assert sum(isinstance(m, DeployDenseBranch) for m in deploy.modules()) == 2 * 4  # 2 MSMHA blocks, q/k/v/out
    for parent in parents:
        for fold in parent.folds:
            assert isinstance(getattr(parent, fold.shift), nn.Identity)
            if fold.norm is not None:
                assert isinstance(getattr(parent, fold.norm), nn.Identity)


def _binary_nodes(model: nn.Module, op: str = "binary_linear") -> list[torch.fx.Node]:
    graph = torch.export.export(to_deploy(model), (torch.zeros(1, 3, 64, 64),)).graph
    return [n for n in graph.nodes if n.op == "call_function" and op in str(n.target)]


def test_binary_mlp_and_branch_shortcuts_and_acts_run_in_the_dense_epilogue(perturbed):
    model = perturbed(precision="binary")
    nodes = _binary_nodes(model)
    fused = [n for n in nodes if len(n.args) > 6 and n.args[5] is not None and n.args[6] is not None]
    assert len(fused) == len(nodes) == 2 * 4  # q/k/v/out of the 2 MSMHA
    mlps = _binary_nodes(model, "binary_mlp")
    assert len(mlps) == 4  # one node per MLP: fc1, the pooling and fc2 with both shortcuts and RPReLUs
    assert all(n.args[5] is not None and n.args[10] is not None for n in mlps)


def test_mlp_with_an_fp_linear_keeps_its_fp_glue(perturbed):
    model = perturbed(precision=FP_FC2)
    deploy = to_deploy(model)
    assert not any(isinstance(m, DeployMLP) for m in deploy.modules())
    mlps = [m for m in deploy.modules() if isinstance(m, BinaryMLP)]
    assert len(mlps) == 4 and all(isinstance(m.fc1, DeployLinear) and not isinstance(m.fc2, DeployLinear) for m in mlps)
    fused = [n for n in _binary_nodes(model) if len(n.args) > 5]
    assert len(fused) == 2 * 4 and all(n.meta["val"].shape == n.args[0].meta["val"].shape for n in fused)  # q/k/v/out


def test_fp32_model_is_left_as_is(perturbed):
    model = perturbed(precision="fp32")
    deploy = to_deploy(model)
    assert not any(isinstance(m, (DeployLinear, DeployConv2d, DeployAttentionProducts)) for m in deploy.modules())


def test_stem_and_fp_downsampling_become_matmuls(perturbed):
    deploy = to_deploy(perturbed(fp_downsample=True))
    assert isinstance(deploy.stem.conv, PatchifyConv)
    assert all(isinstance(d.conv, PatchifyConv) for d in deploy.downsamples)
    assert isinstance(to_deploy(perturbed()).downsamples[0].conv, DeployConv2d)  # binary ones keep the kernel


class _ShiftFeedsTheShortcut(Downsample):
    """A downsampling whose shortcut reads the shifted map: the shift cannot move into the conv's sign."""

    def forward(self, x):
        s = self.shift(self.norm(x))
        return self.act(self.out_norm(self.conv(s)) + F.avg_pool2d(s, 2).repeat(1, 2, 1, 1)) + self.pos


def test_a_block_that_does_not_allow_its_fold_is_refused_not_misfolded(perturbed):
    model = perturbed(precision="binary")
    model.downsamples[0].__class__ = _ShiftFeedsTheShortcut
    with pytest.raises(FoldError, match="_ShiftFeedsTheShortcut.shift's output feeds more than conv"):
        to_deploy(model)
