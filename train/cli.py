"""``bhvit-train``: the two-phase BHViT recipe of the width-scaling thesis (and teacher fine-tuning) from one command.

Every option is a field of :class:`~bhvit.train.config.TrainCfg`; defaults are the thesis values.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click
from tqdm.contrib.logging import logging_redirect_tqdm

from .config import DATASETS, PHASES, TrainCfg, TrainError

__all__ = ["main"]

_D = TrainCfg()


def _opt(*decls, **kw):
    return click.option(*decls, show_default=True, **kw)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
# model
@_opt(
    "--model",
    default=_D.model,
    help="BHViT config name (bhvit_tiny, test_bhvit, ...) or a timm model name "
    "(trains one phase, e.g. the DeiT-Tiny teacher).",
)
@_opt(
    "--width",
    type=float,
    default=None,
    help="Width multiplier w of stage and MLP widths [default: the model's, 1 for bhvit_tiny].",
)
@_opt("--hidden-width", type=float, default=None, help="Stage-width multiplier only (overrides --width).")
@_opt("--intermediate-width", type=float, default=None, help="MLP-width multiplier only (overrides --width).")
@_opt("--fp-downsample", is_flag=True, help="Plain FP downsampling convs (the thesis' 'FP downsampling' row).")
@_opt(
    "--precision",
    default=_D.precision,
    help="Precision map of phase 2: binary, fp (FP reference with the same "
    "budget), binary_fpds, binary_fp_s3attn, binary_fp_first.",
)
@_opt("--img-size", type=int, default=None, help="Input size [default: the model's, 224 for bhvit_tiny].")
@_opt("--drop-path", type=float, default=_D.drop_path, help="Stochastic-depth rate (linear ramp over blocks).")
# phases
@_opt(
    "--phase",
    type=click.Choice(PHASES),
    default=_D.phase,
    help="1: FP from scratch; 2: --precision model from phase 1's best (or --init-from); both: 1 then 2.",
)
@_opt(
    "--init-from",
    type=click.Path(path_type=Path),
    default=None,
    help="Warm-start checkpoint (safetensors) for "
    "the first phase run; tensors are matched by name and shape and the rest is reported.",
)
@_opt(
    "--recalibrate-batches",
    type=click.IntRange(min=1),
    default=_D.recalibrate_batches,
    help="Training batches used to re-estimate BatchNorm statistics (the RPReLU inputs) when a binary phase starts.",
)
# data
@_opt(
    "--dataset",
    type=click.Choice(DATASETS),
    default=_D.dataset,
    help="pets: Oxford-IIIT Pet via torchvision; "
    "folder: ImageFolder dir (train/ + test/, or class dirs); synthetic: generated tiny dataset.",
)
@_opt(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=_D.data_dir,
    help="Dataset root (Pets is downloaded here if the network allows).",
)
@_opt(
    "--val-fraction",
    type=float,
    default=_D.val_fraction,
    help="Stratified validation split of the training pool (model selection).",
)
@_opt("--split-seed", type=int, default=_D.split_seed, help="Seed of the validation split (same for every --seed).")
@_opt("--workers", type=click.IntRange(min=0), default=_D.workers, help="Data-loading processes per GPU.")
# optimisation
@_opt("--epochs", type=click.IntRange(min=1), default=_D.epochs, help="Epochs per phase.")
@_opt("--batch-size", type=click.IntRange(min=2), default=_D.batch_size, help="Batch size per process.")
@_opt("--opt", default=_D.opt, help="timm optimizer name.")
@_opt("--lr", type=float, default=_D.lr, help="Learning rate, scaled by max(1, global batch / 512).")
@_opt(
    "--weight-decay",
    type=float,
    default=_D.weight_decay,
    help="Weight decay (not on 1-d params, biases, position embeddings).",
)
@_opt("--sched", default=_D.sched, help="timm scheduler, stepped once per epoch.")
@_opt("--min-lr", type=float, default=_D.min_lr, help="Final learning rate.")
@_opt("--warmup-lr", type=float, default=_D.warmup_lr, help="Learning rate at the start of warm-up.")
@_opt("--warmup-epochs", type=click.IntRange(min=0), default=_D.warmup_epochs, help="Linear warm-up epochs.")
# augmentation
@_opt("--aa", default=_D.aa, help="timm AutoAugment/RandAugment policy ('' for none).")
@_opt("--color-jitter", type=float, default=_D.color_jitter, help="Colour-jitter strength.")
@_opt("--reprob", type=float, default=_D.reprob, help="Random-erasing probability.")
@_opt("--remode", type=click.Choice(["pixel", "rand", "const"]), default=_D.remode, help="Random-erasing mode.")
@_opt(
    "--interpolation",
    type=click.Choice(["bicubic", "bilinear", "nearest"]),
    default=_D.interpolation,
    help="Resize interpolation (train and eval).",
)
@_opt("--crop-pct", type=float, default=_D.crop_pct, help="Eval centre-crop fraction (224 <- 256).")
@_opt("--mixup", type=float, default=_D.mixup, help="Mixup alpha (0 with --cutmix 0 disables both).")
@_opt("--cutmix", type=float, default=_D.cutmix, help="CutMix alpha.")
@_opt("--smoothing", type=float, default=_D.smoothing, help="Label smoothing.")
# losses
@_opt("--teacher", default=_D.teacher, help="timm model name of the distillation teacher.")
@_opt(
    "--teacher-checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Teacher weights: a checkpoint written by `bhvit-train --model <teacher>`.",
)
@_opt(
    "--distill/--no-distill", default=None, help="Distil from the teacher [default: on for BHViT, off for timm models]."
)
@_opt("--distill-weight", type=float, default=_D.distill_weight, help="lambda: weight of the distillation loss.")
@_opt("--reg-weight", type=float, default=_D.reg_weight, help="beta: weight of L_re (binary models).")
@_opt("--reg-start", type=float, default=_D.reg_start, help="L_re is on from epoch >= reg_start * epochs.")
# run
@_opt("--seed", type=int, default=_D.seed, help="Training seed.")
@_opt(
    "--eval-every",
    type=click.IntRange(min=1),
    default=_D.eval_every,
    help="Validate every N epochs (and after the last).",
)
@_opt("--device", default=_D.device, help="auto, cpu, cuda or cuda:N (torchrun picks cuda:LOCAL_RANK).")
@_opt("--amp/--no-amp", default=_D.amp, help="FP16 autocast and grad scaling on CUDA.")
@_opt(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory [default: runs/train/<name>, numbered upwards].",
)
@_opt("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@_opt("--overwrite", is_flag=True, help="Replace the phases already in --out.")
@_opt("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@_opt("-v", "--verbose", count=True, help="More log output (-v: debug).")
@_opt("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
def main(as_json: bool, verbose: int, quiet: bool, **options) -> None:
    """Train BHViT (phase 1 FP, phase 2 binary of the same width) or a timm teacher on Pets or an image folder."""
    rank = int(os.environ.get("RANK", "0"))
    level = logging.WARNING if quiet or rank else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    from bhvit.models import ConfigError

    from .run import train

    try:
        with logging_redirect_tqdm():
            result = train(TrainCfg(**options))
    except (TrainError, ConfigError) as e:
        raise click.ClickException(str(e)) from None
    if rank == 0:
        if as_json:
            click.echo(json.dumps(result, indent=2))
        for r in result["phases"]:
            click.echo(
                f"phase {r['phase']}: test top-1 {r['test_top1']:.2f}% (best val {r['best_val_top1']:.2f}% "
                f"at epoch {r['best_epoch']})",
                err=True,
            )
        click.echo(f"Saved to {result['out']}", err=True)
