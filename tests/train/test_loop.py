"""The training loop's pieces: BatchNorm recalibration and the per-epoch sums."""

from __future__ import annotations

import copy

import pytest
import torch
from bhvit.models import build_model
from bhvit.train.config import TrainError
from bhvit.train.dist import DistEnv
from bhvit.train.loop import evaluate, recalibrate, train_one_epoch
from torch import nn

CPU = DistEnv(0, 1, torch.device("cpu"))


def _batch(images: torch.Tensor, skipped: int = 0):
    return images, torch.arange(len(images)) % 3, skipped


def test_recalibrate_recomputes_bn_statistics_on_the_first_nonempty_batches():
    torch.manual_seed(0)
    model = build_model("test_bhvit", precision="binary", num_classes=3, drop_path_rate=0.0)
    reference = copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:  # statistics of a trained FP model: far from the binary activations and long accumulated
        m.running_mean.fill_(3.0), m.running_var.fill_(5.0), m.num_batches_tracked.fill_(1000)
    first, second = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    loader = [_batch(first), _batch(torch.zeros(0, 3, 64, 64)), _batch(second), _batch(100 * torch.randn(2, 3, 64, 64))]
    recalibrate(model, loader, 3, CPU)  # the 4th batch lies beyond the limit, the empty one is skipped
    recalibrate(reference, [_batch(first), _batch(second)], 10, CPU)
    for m in norms:
        assert m.num_batches_tracked == 2 and m.momentum == 0.1
        assert not torch.equal(m.running_mean, torch.zeros_like(m.running_mean))  # estimated, not just reset
    expected = reference.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name


class _Loss:
    """Loss ``value[i]`` on batch ``i`` (0 * logits keeps the graph), reported as its CE part."""

    def __init__(self, *values: float):
        self.values = iter(values)

    def __call__(self, student, logits, images, targets, epoch):
        loss = logits.float().sum() * 0 + next(self.values)
        return loss, {"ce": loss.detach()}


def _epoch(loss_fn, loader) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return train_one_epoch(model, model, loader, loss_fn, optimizer, scaler, None, 3, 0.0, 0, CPU, False)


def test_train_one_epoch_sums_without_per_batch_host_sync(monkeypatch):
    loader = [
        _batch(torch.randn(4, 3, 2, 2), skipped=1),
        _batch(torch.randn(3, 3, 2, 2)),  # odd: 2 are used
        _batch(torch.zeros(0, 3, 2, 2), skipped=2),
    ]

    def no_sync(self):
        raise AssertionError("per-batch .item() host sync")

    monkeypatch.setattr(torch.Tensor, "item", no_sync)
    row = _epoch(_Loss(0.1, 0.3), loader)
    values = torch.tensor([0.1, 0.3]).tolist()  # float32 losses, summed in float64 as before
    assert row["train_loss"] == row["loss_ce"] == (values[0] * 4 + values[1] * 2) / 6
    assert (row["train_images"], row["skipped_images"], row["loss_distill"]) == (6, 3, 0.0)
    assert 0 <= row["train_top1"] <= 100


def test_train_one_epoch_reports_non_finite_loss():
    with pytest.raises(TrainError, match="the loss became nan in epoch 0"):
        _epoch(_Loss(0.1, float("nan")), [_batch(torch.randn(2, 3, 2, 2))] * 2)


def test_evaluation_runs_in_fp32_even_inside_an_autocast_region():
    """Validation and test top-1 must be the FP32 function a compiled artifact computes, never fp16/bf16."""
    torch.manual_seed(0)
    model = build_model("test_bhvit", precision="binary", num_classes=3).eval()
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(torch.is_autocast_enabled("cpu")))
    images = torch.randn(6, 3, 64, 64)
    loader = [_batch(images)]
    with torch.no_grad():
        top = model(images).topk(3, -1).indices
    expected = 100 * (top[:, 0] == torch.arange(6) % 3).float().mean().item()
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = evaluate(model, loader, CPU)
    assert seen == [False] and result["top1"] == pytest.approx(expected)
