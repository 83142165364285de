"""``bhvit-compile``: a BHViT checkpoint (or a random init) -> a self-contained artifact for ``bhvit-device``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from bhvit.device.evaluate import EvalDataError, evaluation_line
from bhvit.device.host import host_arch
from bhvit.models.options import MODEL_OPTION_NAMES, model_options, model_overrides
from click.core import ParameterSource

from . import source as sources
from .artifact import OutputError
from .source import ModelSourceError
from .targets import TARGET_NAMES, TargetError, resolve_target

__all__ = ["main"]

# Options that only shape the --random-init model.
_RANDOM_INIT_OPTIONS = (*MODEL_OPTION_NAMES, "seed")
# An ONNX artifact without --target: the baseline named target of this machine's architecture.
_ONNX_TARGET = {"x86_64": "x86-64", "aarch64": "rpi4"}


def _given_random_init_options(ctx: click.Context) -> list[str]:
    """The random-init options the user set (not left at their defaults), as spelled on the command line."""
    return [
        p.opts[0]
        for p in ctx.command.params
        if p.name in _RANDOM_INIT_OPTIONS and ctx.get_parameter_source(p.name) is not ParameterSource.DEFAULT
    ]


def _runs_here(target: str) -> bool:
    try:
        return resolve_target(target, check_tools=False).runs_here
    except TargetError:
        return False


def _fail(message: str) -> None:
    raise click.ClickException(message.splitlines()[0] if message else "failed")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bhvit", prog_name="bhvit-compile")
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--target",
    type=click.Choice(TARGET_NAMES),
    default=None,
    help="rpi5/rpi4: cross-built for the Pi (aarch64, needs aarch64-linux-gnu-gcc); host: this CPU's best "
    "x86 variant read from /proc/cpuinfo; znver4/x86-64-v4/x86-64-v3/x86-64: a named x86 level. Required for "
    "--format tvm; ONNX formats default to this machine's baseline (x86-64, or rpi4 on aarch64): the file is the "
    "same for every target, the name only decides where bhvit-device accepts it.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Artifact directory. Default: ./artifacts/<model>.<precision>.<target> (plus .onnx or .onnx-int8 "
    "for those formats), and ./artifacts/latest then points at it.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads the device should run with (and TVM's num-cores). Default: 4 on a Pi, else this machine's cores.",
)
@click.option(
    "--verify/--no-verify",
    default=None,
    help="Compare the compiled model with PyTorch on random inputs and the bundled sample photos (see "
    "compile/verify.py for the criterion). Default: on; cross targets verify a host build of the same graph. A "
    "failed verification writes nothing (exit 1). --no-verify builds the artifact and records it as unverified "
    "(bhvit-device then warns). onnx-int8 is approximate by design: its result is recorded but does not fail.",
)
@click.option(
    "--eval-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Labelled images (one folder per class, named like the checkpoint's classes, or an Oxford-IIIT Pet "
    "folder: its test split): score the checkpoint in PyTorch (FP32) and the compiled code on the same "
    "preprocessed images; both top-1s, their per-image agreement and the image count go into metadata.json.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tvm", "onnx", "onnx-int8"]),
    default="tvm",
    show_default=True,
    help="tvm: bit-packed XNOR/popcount kernels; onnx: FP32 ONNX of the same function; onnx-int8: "
    "onnxruntime dynamic INT8 (per-channel weights).",
)
@click.option(
    "--tune-db",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Apply a MetaSchedule tuning database (a JSONDatabase work dir) to the FP operators.",
)
@click.option(
    "--tune-trials",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --tune-db: first MetaSchedule-tune the FP operators for this many trials into it (slow: "
    "seconds per trial; tune on the target machine itself).",
)
@click.option("--overwrite", is_flag=True, help="Replace an output directory holding a different artifact.")
@click.option("--random-init", is_flag=True, help="Compile a randomly initialised model instead of a checkpoint.")
@model_options(note=" (with --random-init)")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random-init.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(
    checkpoint,
    target,
    output,
    threads,
    verify,
    eval_dir,
    fmt,
    tune_db,
    tune_trials,
    overwrite,
    random_init,
    seed,
    verbose,
    model,
    **model_values,
):
    """Compile CHECKPOINT (a bhvit-train .safetensors) for --target into an artifact directory."""
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if (checkpoint is None) == (not random_init):
        raise click.UsageError("give either CHECKPOINT or --random-init (not both)")
    if checkpoint is not None and (given := _given_random_init_options(click.get_current_context())):
        raise click.UsageError(f"{', '.join(given)} only apply to --random-init; CHECKPOINT brings its own model")
    if target is None:
        if fmt == "tvm":
            raise click.UsageError("--format tvm needs --target (rpi5 for the Pi, host for this machine)")
        target = _ONNX_TARGET.get(host_arch(), "x86-64")
    if tune_trials and not _runs_here(target):
        raise click.UsageError(
            f"--tune-trials measures candidate kernels on this machine, which cannot run {target} code; tune on "
            f"the target itself (or apply its --tune-db here without --tune-trials)"
        )
    if tune_trials and tune_db is None:
        raise click.UsageError("--tune-trials needs --tune-db DIR to write the tuning records to")
    if tune_db is not None and not tune_trials and not tune_db.is_dir():
        raise click.BadParameter(
            f"{tune_db} is not a directory (create one with --tune-trials)", param_hint="--tune-db"
        )
    from .compiler import CompileOptions, VerificationFailed, compile_model  # torch and TVM: after the checks
    from .verify import Verification

    try:
        spec = resolve_target(target, threads=threads, check_tools=fmt == "tvm")
        if random_init:
            source = sources.random_init(model, seed=seed, **model_overrides(**model_values))
        else:
            source = sources.from_checkpoint(checkpoint)
        options = CompileOptions(spec, output, fmt, verify, overwrite, tune_db, tune_trials, eval_dir)
        out, meta = compile_model(source, options)
    except (TargetError, ModelSourceError, OutputError, EvalDataError) as err:
        _fail(str(err))
    except VerificationFailed as err:
        _fail(f"{err}; the compiled model does not match PyTorch, so nothing was written")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 2**20
    click.echo(
        f"{meta.model['name']} for {spec.name} ({' '.join(f'{k}={v}' for k, v in spec.tvm.items())}): {size:.2f} MiB"
    )
    result = meta.verification
    if result is None:
        click.echo("verification skipped (--no-verify): the artifact is recorded as unverified")
    else:
        click.echo(f"verification {'passed' if result['passed'] else 'FAILED'}: {Verification(**result).summary()}")
    if meta.evaluation is not None:
        click.echo(evaluation_line(meta.evaluation))
    click.echo(f"Saved to {out}")
