import math

import pytest
import torch
from bhvit.models.layers import ApproxSign, AttentionQuantizer, SignQuantizer, WeightQuantizer, sign_pm1


def test_sign_pm1_maps_zero_to_plus_one():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0])
    assert sign_pm1(x).tolist() == [-1.0, 1.0, 1.0, 1.0, 1.0]
    assert torch.sign(torch.tensor(0.0)) == 0  # the PyTorch convention we deliberately do not use


def test_approx_sign_gradient_matches_bireal_formula():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5], requires_grad=True)
    y = ApproxSign.apply(x)
    y.backward(torch.ones_like(y))
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1, 1]
    # 2+2x on [-1, 0], 2-2x on (0, 1], 0 outside
    assert x.grad.tolist() == pytest.approx([0.0, 0.0, 1.0, 2.0, 1.5, 1.0, 0.0, 0.0])


def test_sign_quantizer_is_plain_where_without_autograd():
    q = SignQuantizer()
    x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    with torch.no_grad():
        y = q(x)
    assert y.grad_fn is None and y.tolist() == [-1.0, 1.0, 1.0]


def test_weight_quantizer_forward_is_alpha_times_centred_sign():
    w = torch.tensor([[1.0, 2.0, 3.0, -2.0], [0.5, -0.5, 0.5, -0.5]])
    out = WeightQuantizer()(w)
    # row 0: mean 1 -> centred [0,1,2,-3] -> signs [+,+,+,-]; alpha = mean|w| = 2
    # row 1: mean 0 -> signs [+,-,+,-]; alpha = 0.5
    assert out.tolist() == [[2.0, 2.0, 2.0, -2.0], [0.5, -0.5, 0.5, -0.5]]


def test_weight_quantizer_clamp_ste_gradient_by_hand():
    w = torch.tensor([[1.0, 1.5, 3.0, -1.5]], requires_grad=True)
    WeightQuantizer(recu=False)(w).sum().backward()
    # centred [0,.5,2,-2.5]: inside clamp(+-1) mask m=[1,1,0,0]; grad_j = alpha*(m_j - mean(m)) with alpha=1.75
    assert w.grad.tolist() == [[0.875, 0.875, -0.875, -0.875]]


def test_weight_quantizer_recu_gradient_follows_standardised_clamp():
    torch.manual_seed(0)
    w = (torch.randn(3, 16) * 0.3).requires_grad_()
    g = torch.randn(3, 16)
    (WeightQuantizer(recu=True)(w) * g).sum().backward()
    # independent re-statement of the documented backward formula
    w2 = w.detach().clone().requires_grad_()
    centred = w2 - w2.mean(1, keepdim=True)
    standard = centred * 2 * math.sqrt(2) / torch.sqrt(w2.var(1, keepdim=True) + 1e-5)
    tau = (standard.abs().mean() * -math.log(0.16)).detach()
    alpha = w2.detach().abs().mean(1, keepdim=True)
    (alpha * torch.clamp(standard, -tau, tau) * g).sum().backward()
    assert torch.allclose(w.grad, w2.grad, atol=1e-6)
    assert torch.equal(WeightQuantizer(recu=True)(w.detach()), WeightQuantizer(recu=False)(w.detach()))


def test_attention_quantizer_levels_init_and_zero_point_not_subtracted():
    q = AttentionQuantizer(heads=2).train()
    x = torch.rand(3, 2, 5, 5) * 3
    out = q(x)
    per_head = x.transpose(0, 1).flatten(1)
    assert torch.allclose(q.alpha.data, 2 * per_head.abs().mean(1) / math.sqrt(3))
    assert torch.allclose(q.zero_point.data, 0.1 * per_head.min(1).values)
    level, alpha = q.quantize(x)
    assert set(level.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    expected = torch.clamp(torch.round(x / alpha + q.zero_point.view(1, -1, 1, 1)), 0, 3) * alpha
    assert torch.allclose(out, expected)
    before = q.alpha.detach().clone()
    q(x * 2)  # initialised once only
    assert torch.equal(q.alpha.detach(), before)


def test_attention_quantizer_lsq_gradient_scale():
    q = AttentionQuantizer(heads=1).eval()  # eval: no data-dependent init, alpha=1, z=0
    x = torch.full((1, 1, 2, 2), 1.2)
    q(x).sum().backward()
    g = 1 / math.sqrt(x.numel() * 3)
    # d/d alpha of level*alpha with STE rounding: round(y) + alpha * d(y)/d alpha = 1 + (-x/alpha^2)*alpha = 1 - 1.2
    assert q.alpha.grad.item() == pytest.approx(4 * (1 - 1.2) * g, rel=1e-5)


@pytest.mark.parametrize("recu", [False, True])
def test_weight_quantizer_inference_path_equals_training_forward(recu):
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3, requires_grad=True)
    q = WeightQuantizer(recu=recu)
    trained = q(w)
    with torch.no_grad():
        inferred = q(w)
    assert inferred.grad_fn is None and torch.equal(inferred, trained.detach())
