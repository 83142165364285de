"""Per-target schedules for the binary kernels; :func:`schedule_for` picks by target."""

from __future__ import annotations

from tvm import IRModule, tirx
from tvm.target import Target

from . import generic, rpi5, x86
from .generic import GENERIC, TileConfig

__all__ = ["RULES", "select", "schedule_for"]

RULES = (rpi5.config, x86.config)  # tried in order; the generic config is the fallback


def select(target: Target) -> TileConfig:
    """The first matching tile config for ``target``, else :data:`generic.GENERIC`."""
    target = Target(target) if not isinstance(target, Target) else target
    for rule in RULES:
        cfg = rule(target)
        if cfg is not None:
            return cfg
    return GENERIC


def schedule_for(func: tirx.PrimFunc, target: Target) -> IRModule:
    """Schedule a binary PrimFunc for ``target``."""
    return generic.schedule(func, select(target))
