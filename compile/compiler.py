"""Checkpoint (or random init) -> artifact directory: the steps behind ``bhvit-compile``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from bhvit.device.artifact import ArtifactMeta, load_artifact, save_artifact, write_artifact_metadata
from bhvit.device.weights import WeightsInfo, save_weights
from bhvit.models.cost import model_cost

from . import pipeline
from .artifact import check_output, staging, target_info, update_latest
from .source import ModelSource, ModelSourceError
from .targets import TargetSpec, resolve_target
from .verify import Verification, verify

__all__ = ["FORMATS", "CompileOptions", "VerificationFailed", "compile_model", "default_output"]

logger = logging.getLogger(__name__)

# --format -> (runtime, library file name)
FORMATS = {
    "tvm": ("tvm", "model.so"),
    "onnx": ("onnxruntime", "model.onnx"),
    "onnx-int8": ("onnxruntime", "model.onnx"),
}
WEIGHTS_FILE = "weights.bin"
ARTIFACTS_DIR = Path("artifacts")


@dataclass(frozen=True)
class CompileOptions:
    target: TargetSpec
    output: Path | None = None  # None: ./artifacts/<name> and ./artifacts/latest
    format: str = "tvm"
    verify: bool | None = None  # False: skip, recorded as unverified; cross builds verify a host twin
    overwrite: bool = False
    tune_db: Path | None = None
    tune_trials: int = 0  # > 0: first tune the FP operators into tune_db (MetaSchedule, seconds per trial)
    eval_dir: Path | None = None  # labelled images: score PyTorch and the compiled code on them


class VerificationFailed(Exception):
    """The compiled code does not compute the model's function; nothing was written."""

    def __init__(self, verification: Verification):
        super().__init__(f"verification failed: {verification.summary()}")
        self.verification = verification


def artifact_name(source: ModelSource, options: CompileOptions) -> str:
    suffix = "" if options.format == "tvm" else f".{options.format}"
    return f"{source.name}.{options.target.name}{suffix}"


def default_output(source: ModelSource, options: CompileOptions) -> Path:
    return ARTIFACTS_DIR / artifact_name(source, options)


def _versions() -> dict[str, str]:
    import torch
    import tvm

    versions = {"torch": torch.__version__, "tvm": tvm.__version__}
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return versions


def _build_tvm(
    source: ModelSource, options: CompileOptions, library: Path
) -> tuple[WeightsInfo, Predictor | None, dict[str, dict]]:
    """Lower, build and export the TVM library and its weights file; for cross targets also build the same exported
    graph for this host (returned as a predictor, to be verified and evaluated in place of the artifact). Also
    returns the kernel table (:func:`pipeline.kernel_table`)."""
    from .lower import export_program, to_relax

    spec = options.target
    t0 = time.perf_counter()
    program = export_program(source.model, source.input_shape)
    mod = to_relax(program, spec.tvm_target())
    logger.info("lowered to Relax in %.1f s", time.perf_counter() - t0)
    if options.tune_trials:
        pipeline.tune(mod, spec, options.tune_db, options.tune_trials)
    t0 = time.perf_counter()
    executable, weights, kernels = pipeline.build(mod, spec, options.tune_db)
    pipeline.export_library(executable, spec, library)
    info = save_weights(library.with_name(WEIGHTS_FILE), weights)
    logger.info("built %s for %s in %.1f s", library.name, spec.name, time.perf_counter() - t0)
    if spec.runs_here or (options.verify is False and options.eval_dir is None):
        return info, None, kernels  # verified from the artifact itself
    twin = resolve_target("host", threads=spec.threads)
    logger.info("building the same graph for this host (%s) to verify it", twin.detected)
    predict = _vm_predict(*pipeline.build(to_relax(program, twin.tvm_target()), twin)[:2])
    return info, Predictor(predict, f"host {twin.detected} build of the same graph"), kernels


def _vm_predict(executable, weights: list[np.ndarray]):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    params = [tvm.runtime.tensor(w) for w in weights]

    def predict(x: np.ndarray) -> np.ndarray:
        out = vm["main"](tvm.runtime.tensor(x), *params)
        return (out if hasattr(out, "numpy") else out[0]).numpy()

    return predict


def _build_onnx(source: ModelSource, options: CompileOptions, library: Path) -> None:
    from .onnx_export import export_onnx, quantize_int8

    if options.format == "onnx":
        export_onnx(source.model, source.input_shape, library)
        return
    fp32 = library.with_name("fp32.onnx.tmp")
    export_onnx(source.model, source.input_shape, fp32)
    quantize_int8(fp32, library)
    fp32.unlink()


@dataclass(frozen=True)
class Predictor:
    """Compiled code to check: one ``(1, C, H, W)`` float32 array -> logits, and what runs it."""

    predict: Callable[[np.ndarray], np.ndarray]
    runs_on: str


def _artifact_predictor(directory: Path) -> Predictor:
    from bhvit.device.runtime import load_model

    return Predictor(load_model(load_artifact(directory)), "artifact")


def _check(source: ModelSource, options: CompileOptions, compiled: Predictor) -> tuple[dict | None, dict | None]:
    """Verification (raising :class:`VerificationFailed` unless onnx-int8) and ``--eval-dir`` records."""
    verification = evaluation = None
    if options.verify is not False:
        result = verify(source.model, compiled.predict, source.input_shape, compiled.runs_on, source.preprocess)
        logger.info("verification: %s", result.summary())
        if not result.passed and options.format != "onnx-int8":
            raise VerificationFailed(result)
        verification = result.to_dict()
    if options.eval_dir is not None:
        from .evaluate import evaluate_source

        evaluation = evaluate_source(source, compiled.predict, options.eval_dir, compiled.runs_on)
    return verification, evaluation


def check_supported(source: ModelSource, fmt: str) -> None:
    """Refuse models the kernels cannot run: binary attention with another number of levels than the A·V kernel's
    masks (the ONNX formats run the model's own function and take any)."""
    if fmt != "tvm":
        return
    from bhvit.models.bhvit import AttentionProducts

    from .kernels.params import LEVELS

    odd = sorted(
        {m.levels for m in source.model.modules() if isinstance(m, AttentionProducts) and m.is_binary} - {LEVELS}
    )
    if odd:
        raise ModelSourceError(
            f"{source.origin}: attn_levels={odd[0]} is not supported by the binary attention kernels, which "
            f"implement {LEVELS} levels; train with attn_levels={LEVELS} or compile with --format onnx"
        )


def compile_model(source: ModelSource, options: CompileOptions) -> tuple[Path, ArtifactMeta]:
    """Build the artifact for ``source``; returns its directory and metadata. Nothing is left half-written, and
    an artifact that fails verification is not written at all (:class:`VerificationFailed`)."""
    check_supported(source, options.format)
    runtime, library_name = FORMATS[options.format]
    out = options.output or default_output(source, options)
    check_output(out, source.name, options.target.name, runtime, options.overwrite)
    with staging(out) as tmp:
        library = tmp / library_name
        twin = weights = None
        kernels: dict[str, dict] = {}
        if options.format == "tvm":
            weights, twin, kernels = _build_tvm(source, options, library)
        else:
            _build_onnx(source, options, library)
        cost = model_cost(source.model).row()
        cost["artifact_mib"] = sum(f.stat().st_size for f in tmp.iterdir()) / 2**20
        cfg = source.model.cfg
        meta = write_artifact_metadata(
            tmp,
            runtime=runtime,
            library=library_name,
            target=target_info(options.target),
            class_names=source.class_names,
            preprocess=source.preprocess,
            model={
                "name": source.name,
                "config": cfg.to_dict(),
                "width": cfg.width,
                "precision": source.name.rsplit(".", 1)[-1],
                "format": options.format,
                "source": source.origin,
                **source.extra,
            },
            threads=options.target.threads,
            cost=cost,
            versions=_versions(),
            weights=weights,
            kernels=kernels,
        )
        runnable = options.target.runs_here or options.format != "tvm"
        if options.verify is not False or options.eval_dir is not None:
            verification, evaluation = _check(source, options, _artifact_predictor(tmp) if runnable else twin)
            meta = save_artifact(tmp, replace(meta, verification=verification, evaluation=evaluation))
    if options.output is None:
        update_latest(out)
    return out, meta
