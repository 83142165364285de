"""Loss schedule (train/README.md, "Loss") and the model spec of each phase."""

from __future__ import annotations

import pytest
import torch
from bhvit.models import BHViTCfg
from bhvit.train.config import TrainCfg, TrainError
from bhvit.train.task import TrainLoss, student_spec


class _Uniform(torch.nn.Module):
    def forward(self, images):
        return torch.full((len(images), 3), 1 / 3)


@pytest.mark.parametrize(
    "binary, teacher, epoch, expected",
    [
        (True, True, 0, (0.2, 0.8, 0.0)),
        (True, True, 9, (0.1, 0.8, 0.1)),
        (False, True, 9, (0.2, 0.8, 0.0)),
        (True, False, 8, (1.0, 0.0, 0.0)),
        (True, False, 9, (0.9, 0.0, 0.1)),
        (False, False, 9, (1.0, 0.0, 0.0)),
    ],
)
def test_train_loss_weights_follow_spec_schedule(binary, teacher, epoch, expected):
    loss = TrainLoss(TrainCfg(epochs=10), _Uniform() if teacher else None, binary)
    w = loss.weights(epoch)
    assert (w.ce, w.distill, w.reg) == pytest.approx(expected)


def test_train_loss_value_combines_ce_distill_and_reg():
    from bhvit.models import build_model

    model = build_model("test_bhvit", num_classes=3)
    loss_fn = TrainLoss(TrainCfg(epochs=10), _Uniform(), binary=True)
    logits = torch.randn(4, 3)
    targets = torch.softmax(torch.randn(4, 3), -1)
    loss, parts = loss_fn(model, logits, torch.zeros(4, 3, 64, 64), targets, epoch=9)
    assert all(not p.requires_grad for p in parts.values())  # detached, left on the device
    parts = {k: v.item() for k, v in parts.items()}
    expected = 0.1 * parts["ce"] + 0.8 * parts["distill"] + 0.1 * parts["reg"]
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert parts["reg"] == pytest.approx(model.regularization_loss().item())


def test_student_spec_keeps_width_across_phases():
    cfg = TrainCfg(width=2, img_size=224, precision="binary_fpds")
    fp, binary = (BHViTCfg.from_dict(student_spec(cfg, 37, p)["config"]) for p in ("fp32", cfg.precision))
    assert fp.dims == binary.dims == (128, 256, 512, 1024)
    assert fp.precision.default == "fp32" and not fp.is_binary
    assert binary.precision.overrides == (("downsamples.*", "fp32"),)


def test_student_spec_rejects_invalid_width_with_config_message():
    with pytest.raises(TrainError, match="divisible by 4"):
        student_spec(TrainCfg(width=1.01, img_size=224), 37, "fp32")
