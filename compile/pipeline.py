"""Relax pass lists per target and the build of a Relax module into an exported library.

The pipeline is TVM's CPU pipeline (``relax.backend.cpu_generic``) with two additions between fusion and
lowering: an optional MetaSchedule database (``--tune-db``) and :class:`~bhvit.compile.schedule.GenericCpuSchedule`
for every PrimFunc still unscheduled. Kernels from the kernels helper arrive scheduled and opaque and are left alone.
The lowered ``main`` gets its weights as parameters (:func:`~bhvit.compile.weights.lift_weights`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu

from .fold import NumpyFoldConstant
from .schedule import GenericCpuSchedule, cpu_schedule_cfg, needs_schedule
from .targets import TargetSpec
from .weights import lift_weights

__all__ = ["passes", "build", "export_library", "tune"]

logger = logging.getLogger(__name__)


def _prepare(target) -> list:
    return [
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        NumpyFoldConstant(),
        relax.transform.DeadCodeElimination(),
        *cpu.library_dispatch_passes(target),
        *cpu.legalize_passes(target),
    ]


def passes(target: tvm.target.Target, tune_db: Path | None = None) -> list:
    """The ordered pass list for ``target``: prepare + legalize + fuse, [tuned], generic schedule, lower."""
    tuned = [relax.transform.MetaScheduleApplyDatabase(str(tune_db), enable_warning=False)] if tune_db else []
    return [
        *_prepare(target),
        *tuned,
        GenericCpuSchedule(cpu_schedule_cfg(target)),
        *cpu.dataflow_lower_passes(target),
        *cpu.finalize_passes(target),
    ]


def build(
    mod: tvm.IRModule, spec: TargetSpec, tune_db: Path | None = None
) -> tuple[relax.VMExecutable, list[np.ndarray]]:
    """Compile a Relax module for ``spec``: a ``relax.VMExecutable`` whose ``main`` takes ``(x, *weights)``,
    and the weights."""
    target = spec.tvm_target()
    with target:
        lowered = tvm.transform.Sequential(passes(target, tune_db))(mod)
    lowered, weights = lift_weights(lowered)
    return tvm.compile(lowered, target=target, relax_pipeline=None), weights


def export_library(executable, spec: TargetSpec, path: Path) -> None:
    """Write the shared library, stripped (``-s``: debug info halves the size); cross targets link with
    ``spec.cross_cc``."""
    kwargs = {"cc": spec.cross_cc} if spec.cross_cc else {}
    executable.export_library(str(path), options=["-s"], **kwargs)


def tune(mod: tvm.IRModule, spec: TargetSpec, work_dir: Path, trials: int) -> None:
    """MetaSchedule-tune the FP PrimFuncs of ``mod`` into the database ``work_dir`` (slow: seconds per trial).

    Kernels (opaque or already scheduled) are not tuned.
    """
    from tvm.s_tir import meta_schedule as ms

    target = spec.tvm_target()
    with target:
        fused = tvm.transform.Sequential(_prepare(target))(mod)
    tasks = ms.relax_integration.extract_tasks(fused, target)
    fp = [t.task_name for t in tasks if needs_schedule(t.dispatched[0]["main"])]
    logger.info("tuning %d FP tasks of %d for %d trials into %s", len(fp), len(tasks), trials, work_dir)
    ms.relax_integration.tune_relax(
        fused,
        params={},
        target=target,
        work_dir=str(work_dir),
        max_trials_global=trials,
        op_names=fp,
        cost_model="random",
    )
