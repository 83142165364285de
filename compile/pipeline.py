"""Relax pass lists per target and the build of a Relax module into an exported library.

The pipeline is TVM's CPU pipeline (``relax.backend.cpu_generic``) with inference BatchNorms as one multiply-add
(:mod:`~bhvit.compile.batchnorm`) and polynomial softmax/exp/erf/GELU before legalization
(:mod:`~bhvit.compile.fastmath`), and three additions between fusion and lowering: an optional
MetaSchedule database (``--tune-db``), :class:`~bhvit.compile.schedule.GenericCpuSchedule` for every PrimFunc still
unscheduled (kernels from the kernels helper arrive scheduled and opaque and are left alone), and the merging of
common subexpressions: the importer reshapes a tensor once per consumer, and each reshape left is a VM builtin call
on every run (at w=1 the merge takes 953 builtin calls per inference to 809).
The lowered ``main`` gets its weights as parameters (:func:`~bhvit.compile.weights.lift_weights`). The TIR
functions are lowered by TVM's default TIR pipeline followed by the register-transpose pass
(:mod:`~bhvit.compile.kernels.schedule.register_transpose`, registered as TIR pipeline ``"bhvit"``).
"""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu

from .batchnorm import BatchNormAffine
from .fastmath import fast_math_passes
from .fold import NumpyFoldConstant
from .kernels.relax_emit import BIT_MACS_ATTR, OP_ATTR
from .kernels.schedule.register_transpose import PIPELINE as TIR_PIPELINE
from .schedule import GenericCpuSchedule, cpu_schedule_cfg, needs_schedule
from .targets import TargetSpec
from .weights import lift_weights

__all__ = ["Built", "passes", "build", "kernel_table", "export_library", "tune"]

logger = logging.getLogger(__name__)


def _prepare(target) -> list:
    return [
        BatchNormAffine(),
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        NumpyFoldConstant(),
        relax.transform.DeadCodeElimination(),
        *fast_math_passes(),
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
        relax.transform.EliminateCommonSubexpr(),
        *cpu.dataflow_lower_passes(target),
        *cpu.finalize_passes(target),
    ]


class Built(NamedTuple):
    """A compiled module: its executable (``main(x, *weights)``), the weights, and :func:`kernel_table`."""

    executable: relax.VMExecutable
    weights: list[np.ndarray]
    kernels: dict[str, dict]


def build(mod: tvm.IRModule, spec: TargetSpec, tune_db: Path | None = None) -> Built:
    """Compile a Relax module for ``spec``."""
    target = spec.tvm_target()
    with target:
        lowered = tvm.transform.Sequential(passes(target, tune_db))(mod)
    lowered, weights = lift_weights(lowered)
    executable = tvm.compile(lowered, target=target, relax_pipeline=None, tir_pipeline=TIR_PIPELINE)
    return Built(executable, weights, kernel_table(lowered))


# names legalized PrimFuncs take from TOPI where they differ from the Relax operator's
_TOPI_NAMES = ("transpose", "concatenate", "pool_sum", "adaptive_pool_avg")


@cache
def _relax_op_names() -> tuple[str, ...]:
    """Relax operator names (the part after the last dot) and :data:`_TOPI_NAMES`, longest first."""
    names = {n.rsplit(".", 1)[1] for n in tvm.ir.Op.list_op_names() if n.startswith("relax.")} | set(_TOPI_NAMES)
    return tuple(sorted(names, key=len, reverse=True))


def fused_ops(name: str) -> list[str]:
    """The distinct Relax operators a fused PrimFunc's name lists, in order (TVM names fused functions
    ``fused_<op><n>_<op><n>...`` with numeric suffixes for repeats)."""
    ops: list[str] = []
    rest = name.removeprefix("fused_")
    while rest:
        op = next((o for o in _relax_op_names() if re.match(rf"{re.escape(o)}\d*(_|$)", rest)), None)
        if op is None:  # not an operator name: skip one token
            token, _, rest = rest.partition("_")
            continue
        if op not in ops:
            ops.append(op)
        rest = re.sub(rf"^{re.escape(op)}\d*_?", "", rest)
    return ops


def kernel_table(mod: tvm.IRModule) -> dict[str, dict]:
    """Per PrimFunc of ``mod``: ``op`` (what it computes) and ``bit_macs`` (binary multiply-accumulates per call;
    0 for FP code). Stored in the artifact's metadata for the on-device profile."""
    table = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        attrs = func.attrs or {}
        if OP_ATTR in attrs:
            table[gv.name_hint] = {"op": str(attrs[OP_ATTR]), "bit_macs": int(attrs[BIT_MACS_ATTR])}
        else:
            table[gv.name_hint] = {"op": "FP " + (" + ".join(fused_ops(gv.name_hint)) or gv.name_hint), "bit_macs": 0}
    return dict(sorted(table.items()))


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
