import inspect

import pytest
import torch
from bhvit.models.layers import BinaryConv2d, BinaryLinear, sign_pm1
from torch import nn
from torch.nn import functional as F


def _binary_weight(w):
    flat = w.flatten(1)
    return (flat.abs().mean(1, keepdim=True) * sign_pm1(flat - flat.mean(1, keepdim=True))).view_as(w)


@pytest.mark.parametrize("cls, base", [(BinaryLinear, nn.Linear), (BinaryConv2d, nn.Conv2d)])
def test_binary_layer_signature_keeps_torch_parameters(cls, base):
    ours = inspect.signature(cls.__init__).parameters
    for name in inspect.signature(base.__init__).parameters:
        if name not in ("padding_mode",):
            assert name in ours, name
    assert ours["precision"].default == "binary"


def test_binary_linear_equals_linear_on_signed_inputs_and_weights():
    torch.manual_seed(0)
    layer = BinaryLinear(37, 11).eval()
    x = torch.randn(4, 5, 37)
    x[0, 0, :3] = 0.0
    with torch.no_grad():
        expected = F.linear(sign_pm1(x), _binary_weight(layer.weight))
        assert torch.allclose(layer(x), expected, atol=1e-6)


def test_fp_linear_behaves_like_nn_linear():
    torch.manual_seed(0)
    ours, ref = BinaryLinear(8, 3, precision="fp32"), nn.Linear(8, 3, bias=False)
    ref.weight.data.copy_(ours.weight.data)
    x = torch.randn(2, 8)
    assert torch.equal(ours(x), ref(x))
    assert ours.input_quantizer is None and ours.weight_quantizer is None


@pytest.mark.parametrize("dilation", [1, 3, 5])
def test_binary_conv_pads_after_sign_so_border_taps_are_zero(dilation):
    torch.manual_seed(0)
    conv = BinaryConv2d(16, 16, 3, padding=dilation, dilation=dilation, groups=4).eval()
    x = -torch.rand(2, 16, 7, 7)  # all negative: signs are -1 inside, padded taps must count 0 (not -1)
    with torch.no_grad():
        wb = _binary_weight(conv.weight)
        expected = F.conv2d(sign_pm1(x), wb, padding=dilation, dilation=dilation, groups=4)
        minus_one_pad = F.conv2d(F.pad(sign_pm1(x), [dilation] * 4, value=-1.0), wb, dilation=dilation, groups=4)
        out = conv(x)
    assert torch.allclose(out, expected, atol=1e-6)
    assert not torch.allclose(out, minus_one_pad, atol=1e-3)


def test_binary_layers_pass_gradients_to_latent_weights_and_inputs():
    layer = BinaryConv2d(8, 8, 3, padding=1, groups=4)
    x = (torch.rand(1, 8, 5, 5) - 0.5).requires_grad_()
    layer(x).square().sum().backward()
    assert layer.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
