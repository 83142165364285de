"""``bhvit-train`` end to end: resolve options, guard the run directory, load data and teacher, run the phases.

Phase 1 trains the FP32 model of the requested architecture (from scratch or ``--init-from``); phase 2 trains the
``--precision`` model of the *same* architecture starting from phase 1's ``best`` checkpoint (or ``--init-from``
when only phase 2 runs). timm models (e.g. the teacher) have one phase.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from bhvit.models import variant_name
from timm.utils import random_seed

from .config import TrainCfg, TrainError
from .data import load_splits
from .dist import DistEnv, setup, teardown
from .layout import BEST, LAST, RESULT, phase_dir
from .loop import PhaseSpec, run_phase
from .task import default_img_size, is_bhvit, load_teacher, student_spec, uses_distillation

__all__ = ["train", "default_out_dir"]

log = logging.getLogger(__name__)


def default_out_dir(cfg: TrainCfg, root: Path = Path("runs/train")) -> Path:
    """``runs/train/<variant>_<precision>_s<seed>`` (see :func:`~bhvit.models.variant_name`), numbered upwards
    (``-2``, ``-3``) if taken."""
    precision = cfg.precision if is_bhvit(cfg.model) else "fp32"
    variant = variant_name(
        cfg.model,
        width=cfg.width,
        hidden_width=cfg.hidden_width,
        intermediate_width=cfg.intermediate_width,
        fp_downsample=cfg.fp_downsample,
    )
    base = root / f"{variant}_{precision}_s{cfg.seed}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _phase_numbers(cfg: TrainCfg) -> list[int]:
    if not is_bhvit(cfg.model):
        if cfg.phase == "2":
            raise TrainError(f"{cfg.model} is a timm model: it trains in one phase (use --phase 1)")
        return [1]
    return {"1": [1], "2": [2], "both": [1, 2]}[cfg.phase]


def _guard_out_dir(cfg: TrainCfg, out: Path, phases: list[int]) -> None:
    """Refuse to write over the phases this run trains unless ``--resume`` or ``--overwrite``."""
    taken = [n for n in phases if any((phase_dir(out, n) / f).exists() for f in (BEST, LAST, RESULT))]
    if not taken or cfg.resume or cfg.overwrite:
        return
    finished = all((phase_dir(out, n) / RESULT).exists() for n in taken)
    what = "a finished run" if finished else "an unfinished run"
    raise TrainError(
        f"{out} already holds {what} (phase {', '.join(map(str, taken))}); pass --resume to continue "
        f"it, --overwrite to start again, or another --out"
    )


def _phase_init(cfg: TrainCfg, out: Path, number: int) -> Path | None:
    if number == 1 or cfg.phase == "2" and cfg.init_from is not None:
        return cfg.init_from
    phase1_best = phase_dir(out, 1) / BEST
    if cfg.phase == "2" and not phase1_best.exists():
        raise TrainError(
            f"phase 2 starts from a trained model: pass --init-from CKPT or run phase 1 into {out} "
            f"first ({phase1_best} is missing)"
        )
    return phase1_best


def _train(cfg: TrainCfg, env: DistEnv) -> dict:
    cfg = cfg.replace(img_size=cfg.img_size or default_img_size(cfg.model))
    phases = _phase_numbers(cfg)
    out = Path(env.broadcast(cfg.out or default_out_dir(cfg)))
    _guard_out_dir(cfg, out, phases)
    env.barrier()  # every rank has checked the directory before the main one writes into it
    if env.is_main:
        if cfg.overwrite:
            for n in phases:
                shutil.rmtree(phase_dir(out, n), ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        splits = load_splits(cfg)  # may download or generate data: main first, then the others read it
    env.barrier()
    if not env.is_main:
        splits = load_splits(cfg)
    log.info(
        "data: %d train, %d val, %d test images, %d classes",
        len(splits.train),
        len(splits.val),
        len(splits.test),
        len(splits.class_names),
    )
    teacher = load_teacher(cfg, splits.class_names, env.device) if uses_distillation(cfg) else None
    results = []
    for number in phases:
        random_seed(cfg.seed + 1000 * number, env.rank)
        precision = "fp32" if number == 1 else cfg.precision
        spec = student_spec(cfg, len(splits.class_names), precision)
        phase = PhaseSpec(number, spec, phase_dir(out, number), _phase_init(cfg, out, number))
        results.append(run_phase(cfg, phase, splits, teacher, env))
    return {"out": str(out), "phases": results}


def train(cfg: TrainCfg) -> dict:
    """Run the phases of ``cfg`` (single process or one rank of torchrun); returns the run dir and phase results."""
    env = setup(cfg.device)
    try:
        return _train(cfg, env)
    finally:
        teardown()
