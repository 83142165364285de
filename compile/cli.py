"""``bhvit-compile``: a BHViT checkpoint (or a random init) -> a self-contained artifact for ``bhvit-device``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
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
    help="Compare the compiled model with PyTorch on random inputs (same top-1, logits within "
    "tolerance). Default: on; cross targets verify a host build of the same graph. onnx-int8 is "
    "approximate by design: its result is recorded in the metadata but does not fail the command.",
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
    from .compiler import CompileOptions, compile_model  # imports torch and TVM: after argument checks

    try:
        spec = resolve_target(target, threads=threads, check_tools=fmt == "tvm")
        if random_init:
            source = sources.random_init(model, seed=seed, **model_overrides(**model_values))
        else:
            source = sources.from_checkpoint(checkpoint)
        out, meta = compile_model(source, CompileOptions(spec, output, fmt, verify, overwrite, tune_db, tune_trials))
    except (TargetError, ModelSourceError, OutputError) as err:
        _fail(str(err))
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 2**20
    click.echo(
        f"{meta.model['name']} for {spec.name} ({' '.join(f'{k}={v}' for k, v in spec.tvm.items())}): {size:.2f} MiB"
    )
    result = meta.verification
    if result is not None:
        status = "passed" if result["passed"] else "FAILED"
        click.echo(
            f"verification {status}: max |logit err| {result['max_abs_err']:.3g} (tolerance "
            f"{result['tolerance']:.3g}), top-1 agreement {result['top1_agree']:.0%} on {result['inputs']} "
            f"inputs ({result['runs_on']})"
        )
    click.echo(f"Saved to {out}")
    if result is not None and not result["passed"] and fmt != "onnx-int8":
        _fail(f"verification failed: the artifact in {out} does not match PyTorch")
