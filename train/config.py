"""``TrainCfg``: one field per ``bhvit-train`` option; defaults are the thesis recipe (train/README.md, "Recipe")."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from bhvit.models.config import ConfigError, resolve_precision
from bhvit.models.preprocess import DEFAULT_CROP_PCT

__all__ = ["TrainCfg", "TrainError", "PHASES", "DATASETS"]

PHASES = ("1", "2", "both")
DATASETS = ("pets", "folder", "synthetic")


def _opt(default, help: str, **cli):
    """A field with its ``bhvit-train`` help text; ``cli`` holds ``choices``, ``min`` or ``switch`` (--x/--no-x)."""
    return field(default=default, metadata={"help": help, **cli})


class TrainError(Exception):
    """A problem with the user's input (data, checkpoint, output dir); the message says what to do."""


@dataclass(frozen=True)
class TrainCfg:
    """Training options, one field per ``bhvit-train`` option (its help text is the field's metadata).

    ``None`` means "take it from the model's named config" (width, image size).
    """

    # model (the shared --model/--width/... options of bhvit.models.options; None: the named model's value)
    model: str = "bhvit_tiny"
    width: float | None = None
    hidden_width: float | None = None
    intermediate_width: float | None = None
    fp_downsample: bool = False
    precision: str = "binary"
    img_size: int | None = None
    drop_path: float = _opt(0.1, "Stochastic-depth rate (linear ramp over blocks).")
    # phases and warm starts
    phase: str = _opt(
        "both",
        "1: FP from scratch; 2: --precision model from phase 1's best (or --init-from); both: 1 then 2.",
        choices=PHASES,
    )
    init_from: Path | None = _opt(
        None,
        "Warm-start checkpoint (safetensors) for the first phase run; tensors are matched by name and shape and the "
        "rest is reported.",
    )
    recalibrate_batches: int = _opt(
        20,
        "Training batches used to re-estimate BatchNorm statistics (the RPReLU inputs) when a binary phase starts.",
        min=1,
    )
    # data
    dataset: str = _opt(
        "pets",
        "pets: Oxford-IIIT Pet via torchvision; folder: ImageFolder dir (train/ + test/, or class dirs); synthetic: "
        "generated tiny dataset.",
        choices=DATASETS,
    )
    data_dir: Path = _opt(Path("data"), "Dataset root (Pets is downloaded here if the network allows).")
    val_fraction: float = _opt(0.1, "Stratified validation split of the training pool (model selection).")
    split_seed: int = _opt(0, "Seed of the validation split (same for every --seed).")
    workers: int = _opt(min(8, os.cpu_count() or 1), "Data-loading processes per GPU.", min=0)
    # optimisation
    epochs: int = _opt(1000, "Epochs per phase.", min=1)
    batch_size: int = _opt(24, "Batch size per process.", min=2)
    opt: str = _opt("adamw", "timm optimizer name.")
    lr: float = _opt(5e-4, "Learning rate, scaled by max(1, global batch / 512).")
    weight_decay: float = _opt(0.05, "Weight decay (not on 1-d params, biases, position embeddings).")
    sched: str = _opt("cosine", "timm scheduler, stepped once per epoch.")
    min_lr: float = _opt(1e-8, "Final learning rate.")
    warmup_lr: float = _opt(1e-6, "Learning rate at the start of warm-up.")
    warmup_epochs: int = _opt(5, "Linear warm-up epochs.", min=0)
    # augmentation (timm)
    aa: str = _opt("rand-m9-mstd0.5-inc1", "timm AutoAugment/RandAugment policy ('' for none).")
    color_jitter: float = _opt(0.4, "Colour-jitter strength.")
    reprob: float = _opt(0.25, "Random-erasing probability.")
    remode: str = _opt("pixel", "Random-erasing mode.", choices=("pixel", "rand", "const"))
    interpolation: str = _opt(
        "bicubic", "Resize interpolation (train and eval).", choices=("bicubic", "bilinear", "nearest")
    )
    crop_pct: float = _opt(DEFAULT_CROP_PCT, "Eval centre-crop fraction (224 <- 256).")
    mixup: float = _opt(0.8, "Mixup alpha (0 with --cutmix 0 disables both).")
    cutmix: float = _opt(1.0, "CutMix alpha.")
    smoothing: float = _opt(0.1, "Label smoothing.")
    # losses
    teacher: str = _opt("deit_tiny_patch16_224", "timm model name of the distillation teacher.")
    teacher_checkpoint: Path | None = _opt(
        None, "Teacher weights: a checkpoint written by `bhvit-train --model <teacher>`."
    )
    distill: bool | None = _opt(
        None, "Distil from the teacher [default: on for BHViT, off for timm models].", switch=True
    )
    distill_weight: float = _opt(0.8, "lambda: weight of the distillation loss.")
    reg_weight: float = _opt(0.1, "beta: weight of L_re (binary models).")
    reg_start: float = _opt(0.9, "L_re is on from epoch >= reg_start * epochs.")
    # run
    seed: int = _opt(0, "Training seed.")
    eval_every: int = _opt(5, "Validate every N epochs (and after the last).", min=1)
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N (torchrun picks cuda:LOCAL_RANK).")
    amp: bool = _opt(True, "FP16 autocast and grad scaling on CUDA.", switch=True)
    out: Path | None = _opt(None, "Run directory [default: runs/train/<name>, numbered upwards].")
    resume: bool = _opt(False, "Continue the run in --out from its last checkpoint.")
    overwrite: bool = _opt(False, "Replace the phases already in --out.")

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
