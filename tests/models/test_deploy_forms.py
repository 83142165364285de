"""Each block's deploy form computes the block's function, and a fold that its forward does not allow is refused."""

from __future__ import annotations

import copy

import pytest
import torch
from bhvit.models.bhvit import Downsample
from bhvit.models.layers import CUSTOM, EAGER, Deployable, FoldError, LayerScale, PatchifyConv
from torch import nn
from torch.nn import functional as F


def _block_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """The positional inputs each module with a deploy form receives in one forward of ``model``."""
    inputs: dict[str, tuple] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, name=name: inputs.setdefault(name, args))
        for name, m in model.named_modules()
        if name and isinstance(m, Deployable)
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return inputs


@pytest.mark.parametrize(
    "kw", [dict(precision="binary"), dict(precision="binary", fp_downsample=True)], ids=["binary", "fpds"]
)
def test_each_block_deploy_form_equals_the_block(perturbed, kw):
    model = perturbed(**kw)
    assert all(m.alpha.abs().min() > 0 for m in model.modules() if isinstance(m, LayerScale))  # shift branches on
    inputs = _block_inputs(model, torch.randn(2, 3, 64, 64))
    checked = set()
    for name, block in model.named_modules():
        if name not in inputs:
            continue
        form = copy.deepcopy(block).deploy_form(EAGER)
        with torch.no_grad():
            torch.testing.assert_close(form(*inputs[name]), block(*inputs[name]), atol=1e-4, rtol=1e-4, msg=name)
        checked.add(type(block).__name__)
    blocks = {"Stem", "MSGDCBlock", "BinaryMLP", "_DenseBranch", "AttentionProducts", "Downsample", "_BlockTail"}
    assert blocks <= checked


class _ShiftFeedsTheShortcut(Downsample):
    def forward(self, x):
        s = self.shift(self.norm(x))
        return self.act(self.out_norm(self.conv(s)) + F.avg_pool2d(s, 2).repeat(1, 2, 1, 1)) + self.pos


class _OpBetweenLayerAndNorm(Downsample):
    def forward(self, x):
        return self.out_norm(self.conv(self.shift(self.norm(x))) * 2) + self.pos


class _OpBetweenShiftAndLayer(Downsample):
    def forward(self, x):
        return self.out_norm(self.conv(F.relu(self.shift(self.norm(x))))) + self.pos


class _LayerOutputUsedTwice(Downsample):
    def forward(self, x):
        y = self.conv(self.shift(self.norm(x)))
        return self.act(self.out_norm(y) + y) + self.pos


class _ShiftCalledTwice(Downsample):
    def forward(self, x):
        u = self.norm(x)
        return self.out_norm(self.conv(self.shift(u))) + self.shift(u)[:, :1, ::2, ::2] + self.pos


@pytest.mark.parametrize(
    "misfit,why",
    [
        (_ShiftFeedsTheShortcut, "shift's output feeds more than conv"),
        (_OpBetweenLayerAndNorm, "conv's output reaches out_norm through"),
        (_OpBetweenShiftAndLayer, "conv does not read shift's output alone"),
        (_LayerOutputUsedTwice, "conv's output feeds 2 nodes"),
        (_ShiftCalledTwice, "shift is called 2 times"),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_a_block_whose_forward_does_not_allow_its_fold_is_refused(misfit, why):
    block = misfit("d", 8, 16, 4, precision="binary", plain=False).eval()
    with pytest.raises(FoldError, match=why):
        block.deploy_form(EAGER)


def test_folding_needs_eval_mode():
    with pytest.raises(FoldError, match="eval"):
        Downsample("d", 8, 16, 4, precision="binary", plain=False).deploy_form(EAGER)


@pytest.mark.parametrize("ops", [EAGER, CUSTOM], ids=["eager", "custom-op"])
@pytest.mark.parametrize(
    "conv,size",
    [(nn.Conv2d(3, 8, 4, stride=4), (12, 16)), (nn.Conv2d(8, 16, 2, stride=2, bias=False), (13, 11))],
    ids=["bias", "odd-map"],
)
def test_patchify_conv_equals_the_strided_conv(conv, size, ops):
    with torch.no_grad():
        for p in conv.parameters():
            p.add_(torch.randn_like(p))  # trained-like
    x = torch.randn(2, conv.in_channels, *size)
    assert PatchifyConv.applies(conv)
    with torch.no_grad():
        torch.testing.assert_close(PatchifyConv(conv, ops)(x), conv(x), atol=1e-5, rtol=1e-5)
    assert not PatchifyConv.applies(nn.Conv2d(8, 8, 3, padding=1))
    assert not PatchifyConv.applies(nn.Conv2d(8, 8, 2, stride=2, groups=2))


def test_binary_attention_deploy_form_refuses_a_head_dim_whose_logits_overflow_exp():
    """The deploy form's softmax skips the row maximum, which is safe only while exp(sqrt(head_dim)) is finite."""
    from bhvit.models.bhvit import AttentionProducts

    assert AttentionProducts(1, 88 * 88, "binary", 3).deploy_form(EAGER) is not None
    with pytest.raises(ValueError, match="head dim 7745"):
        AttentionProducts(1, 88 * 88 + 1, "binary", 3).deploy_form(EAGER)
