"""What is trained and against what: the student model spec, the teacher, and the loss of ``train/README.md`` ("Loss").

``L = (1 - lam - beta) * CE(student, mixed soft targets) + lam * L_dis + beta * L_re`` with ``lam = distill_weight``
when a teacher is used (else 0) and ``beta = reg_weight`` for binary models once ``epoch >= reg_start * epochs``
(else 0). This single formula gives the thesis' binary runs (0.2 CE + 0.8 L_dis, then 0.1 / 0.8 / 0.1), its FP runs
(0.2 CE + 0.8 L_dis) and, without a teacher, plain CE (binary: 0.9 CE + 0.1 L_re in the final 10%).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from bhvit.models.checkpoint import CheckpointError, load_checkpoint
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torch.nn import functional as F

from .config import TrainCfg, TrainError

__all__ = [
    "is_bhvit",
    "default_img_size",
    "student_spec",
    "uses_distillation",
    "Teacher",
    "load_teacher",
    "LossWeights",
    "TrainLoss",
]

log = logging.getLogger(__name__)


def is_bhvit(name: str) -> bool:
    from bhvit.models import model_cfgs

    return name in model_cfgs


def default_img_size(name: str) -> int:
    """Input size of a named BHViT config or of a timm model's default pretrained config."""
    if is_bhvit(name):
        from bhvit.models import model_cfgs

        return model_cfgs[name].img_size
    import timm

    if not timm.is_model(name):
        from bhvit.models import list_models

        raise TrainError(f"unknown model {name!r}: not a BHViT ({', '.join(list_models())}) nor a timm model")
    return timm.models.get_pretrained_cfg(name).input_size[-1]


def student_spec(cfg: TrainCfg, num_classes: int, precision: str) -> dict:
    """The model spec (see ``checkpoint.model_from_spec``) of a phase trained with ``precision``."""
    if is_bhvit(cfg.model):
        from bhvit.models import ConfigError, resolve_config

        try:
            model_cfg = resolve_config(
                cfg.model,
                width=cfg.width,
                hidden_width=cfg.hidden_width,
                intermediate_width=cfg.intermediate_width,
                fp_downsample=cfg.fp_downsample or None,
                precision=precision,
                img_size=cfg.img_size,
                num_classes=num_classes,
                drop_path_rate=cfg.drop_path,
            )
        except ConfigError as e:
            raise TrainError(str(e)) from None
        return {"family": "bhvit", "model": cfg.model, "config": model_cfg.to_dict()}
    config = {"num_classes": num_classes, "drop_path_rate": cfg.drop_path}
    if cfg.img_size != default_img_size(cfg.model):
        config["img_size"] = cfg.img_size
    return {"family": "timm", "model": cfg.model, "config": config}


def uses_distillation(cfg: TrainCfg) -> bool:
    """``--distill/--no-distill``; unset means on for BHViT students and off for timm models (teachers)."""
    return cfg.distill if cfg.distill is not None else is_bhvit(cfg.model)


class Teacher(nn.Module):
    """A frozen classifier that resizes the student's batch to its own input size and returns class probabilities."""

    def __init__(self, model: nn.Module, input_size: int):
        super().__init__()
        self.model, self.input_size = model.eval().requires_grad_(False), input_size

    def train(self, mode: bool = True) -> Teacher:
        return self  # always eval: BN statistics and dropout of the teacher stay fixed

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
        return self.model(images).float().softmax(-1)


def load_teacher(cfg: TrainCfg, class_names: list[str], device: torch.device) -> Teacher:
    """The frozen teacher from ``--teacher-checkpoint``, checked against ``--teacher`` and the class names."""
    if cfg.teacher_checkpoint is None:
        raise TrainError(
            f"distillation needs --teacher-checkpoint: train the teacher first with "
            f"`bhvit-train --model {cfg.teacher} --dataset {cfg.dataset} --data-dir {cfg.data_dir} "
            f"--out runs/teacher` (then pass runs/teacher/phase1/best.safetensors), or use --no-distill"
        )
    try:
        teacher, meta = load_checkpoint(Path(cfg.teacher_checkpoint), device)
    except CheckpointError as e:
        raise TrainError(f"--teacher-checkpoint: {e}") from None
    if meta["model"] != cfg.teacher:
        raise TrainError(f"--teacher-checkpoint holds {meta['model']}, but --teacher is {cfg.teacher}")
    if meta["class_names"] != class_names:
        raise TrainError(
            f"--teacher-checkpoint was trained on other classes ({len(meta['class_names'])}) than "
            f"this dataset ({len(class_names)}); fine-tune the teacher on the same data"
        )
    log.info("teacher %s from %s (val top-1 %s)", meta["model"], cfg.teacher_checkpoint, meta.get("val_top1"))
    return Teacher(teacher, meta["preprocess"]["input_size"][-1])


@dataclass(frozen=True)
class LossWeights:
    ce: float
    distill: float
    reg: float


class TrainLoss(nn.Module):
    """The training loss of one phase; ``weights(epoch)`` gives the schedule, ``forward`` the value and its parts."""

    def __init__(self, cfg: TrainCfg, teacher: Teacher | None, binary: bool):
        super().__init__()
        self.cfg, self.teacher, self.binary = cfg, teacher, binary
        self.soft_ce = SoftTargetCrossEntropy()

    def weights(self, epoch: int) -> LossWeights:
        lam = self.cfg.distill_weight if self.teacher is not None else 0.0
        beta = self.cfg.reg_weight if self.binary and epoch >= self.cfg.reg_start * self.cfg.epochs else 0.0
        return LossWeights(1.0 - lam - beta, lam, beta)

    def forward(
        self, model: nn.Module, logits: torch.Tensor, images: torch.Tensor, targets: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``targets`` are Mixup's soft targets; the teacher sees the same (mixed) ``images``.

        Returns the loss and its unweighted parts (detached, still on the device: no host sync).
        """
        w = self.weights(epoch)
        logits = logits.float()
        ce = self.soft_ce(logits, targets)
        loss, parts = w.ce * ce, {"ce": ce.detach()}
        if w.distill:
            dis = self.soft_ce(logits, self.teacher(images))
            loss, parts["distill"] = loss + w.distill * dis, dis.detach()
        if w.reg:
            reg = model.regularization_loss()
            loss, parts["reg"] = loss + w.reg * reg, reg.detach()
        return loss, parts
