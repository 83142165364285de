"""``TrainCfg``: one field per ``bhvit-train`` option; defaults are the thesis recipe (train/README.md, "Recipe")."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from bhvit.models.config import ConfigError, resolve_precision
from bhvit.models.preprocess import DEFAULT_CROP_PCT

__all__ = ["TrainCfg", "TrainError", "PHASES", "DATASETS"]

PHASES = ("1", "2", "both")
DATASETS = ("pets", "folder", "synthetic")


class TrainError(Exception):
    """A problem with the user's input (data, checkpoint, output dir); the message says what to do."""


@dataclass(frozen=True)
class TrainCfg:
    """Training options. ``None`` means "take it from the model's named config" (width, image size)."""

    # model
    model: str = "bhvit_tiny"
    width: float | None = None
    hidden_width: float | None = None
    intermediate_width: float | None = None
    fp_downsample: bool = False
    precision: str = "binary"
    img_size: int | None = None
    drop_path: float = 0.1
    # phases and warm starts
    phase: str = "both"
    init_from: Path | None = None
    recalibrate_batches: int = 20
    # data
    dataset: str = "pets"
    data_dir: Path = Path("data")
    val_fraction: float = 0.1
    split_seed: int = 0
    workers: int = min(8, os.cpu_count() or 1)
    # optimisation
    epochs: int = 1000
    batch_size: int = 24
    opt: str = "adamw"
    lr: float = 5e-4
    weight_decay: float = 0.05
    sched: str = "cosine"
    min_lr: float = 1e-8
    warmup_lr: float = 1e-6
    warmup_epochs: int = 5
    # augmentation (timm)
    aa: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    reprob: float = 0.25
    remode: str = "pixel"
    interpolation: str = "bicubic"
    crop_pct: float = DEFAULT_CROP_PCT
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    # losses
    teacher: str = "deit_tiny_patch16_224"
    teacher_checkpoint: Path | None = None
    distill: bool | None = None
    distill_weight: float = 0.8
    reg_weight: float = 0.1
    reg_start: float = 0.9
    # run
    seed: int = 0
    eval_every: int = 5
    device: str = "auto"
    amp: bool = True
    out: Path | None = None
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise TrainError(f"--phase must be one of {', '.join(PHASES)}, got {self.phase!r}")
        if self.dataset not in DATASETS:
            raise TrainError(f"--dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if self.resume and self.overwrite:
            raise TrainError("--resume and --overwrite exclude each other: continue the run or start it again")
        if self.resume and self.out is None:
            raise TrainError("--resume needs --out DIR (the run directory to continue)")
        if not 0 < self.val_fraction < 1:
            raise TrainError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 2:
            raise TrainError("--epochs must be >= 1 and --batch-size >= 2 (Mixup pairs samples)")
        try:
            resolve_precision(self.precision)
        except ConfigError as e:
            raise TrainError(f"--precision: {e}") from None
        if self.distill_weight + self.reg_weight > 1:
            raise TrainError("--distill-weight + --reg-weight must not exceed 1 (the CE weight is 1 - their sum)")

    def replace(self, **changes) -> TrainCfg:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}
