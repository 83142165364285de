"""``bhvit-train``: the two-phase BHViT recipe of the width-scaling thesis (and teacher fine-tuning) from one command.

Every option is a field of :class:`~bhvit.train.config.TrainCfg` (options generated from its fields, help text from
their metadata); the model options are the ones every bhvit CLI shares. Defaults are the thesis values.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import click
from bhvit.models.options import model_options
from tqdm.contrib.logging import logging_redirect_tqdm

from .config import TrainCfg, TrainError

__all__ = ["main"]

# The model options shared with bhvit-cost and bhvit-compile; --model also names timm models here.
_MODEL_OPTIONS = ("model", "width", "hidden_width", "intermediate_width", "fp_downsample", "precision", "img_size")


def _click_type(f: dataclasses.Field):
    meta, kind = f.metadata, str(f.type).replace(" | None", "")
    if "choices" in meta:
        return click.Choice(meta["choices"])
    base = {"int": int, "float": float, "str": str, "Path": click.Path(path_type=Path)}[kind]
    return click.IntRange(min=meta["min"]) if "min" in meta else base


def _train_cfg_options(command):
    """One click option per :class:`TrainCfg` field (help and default from the field), in field order."""
    for f in reversed(dataclasses.fields(TrainCfg)):
        if f.name in _MODEL_OPTIONS:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.metadata.get("switch"):
            decls, kw = (f"{flag}/--no-{flag[2:]}",), {}
        elif "bool" in str(f.type):
            decls, kw = (flag,), {"is_flag": True}
        else:
            decls, kw = (flag,), {"type": _click_type(f)}
        show = f.default is not None and not kw.get("is_flag")
        command = click.option(*decls, default=f.default, show_default=show, help=f.metadata["help"], **kw)(command)
    return command


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="bhvit", prog_name="bhvit-train")
@model_options(
    _MODEL_OPTIONS,
    any_model=True,
    model={
        "help": "BHViT config name (bhvit_tiny, test_bhvit, ...) or a timm model name (trains one phase, e.g. "
        "the DeiT-Tiny teacher)."
    },
    precision={
        "help": "Precision map of phase 2: binary, fp (FP reference with the same budget), binary_fpds, "
        "binary_fp_s3attn, binary_fp_first [default: binary]."
    },
)
@_train_cfg_options
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
def main(as_json: bool, verbose: int, quiet: bool, **options) -> None:
    """Train BHViT (phase 1 FP, phase 2 binary of the same width) or a timm teacher on Pets or an image folder."""
    rank = int(os.environ.get("RANK", "0"))
    level = logging.WARNING if quiet or rank else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    from bhvit.models import ConfigError
    from bhvit.models.checkpoint import CheckpointError

    from .run import train

    try:
        with logging_redirect_tqdm():
            result = train(TrainCfg(**{k: v for k, v in options.items() if v is not None}))
    except (TrainError, ConfigError, CheckpointError) as e:
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
