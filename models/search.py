"""Budgeted mixed-precision search: which widths and precision maps fit a memory/OPs budget.

Candidates combine a stage-width multiplier, an MLP-width multiplier and a precision variant (all binary, FP
downsampling, FP stage-3 attention, FP first block). Costs come from :func:`~bhvit.models.cost.config_cost`, so the
search is exact for every candidate, not an extrapolation.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from .config import BHViTCfg, ConfigError
from .cost import ModelCost, config_cost
from .factory import resolve_config

__all__ = ["Budget", "Candidate", "VARIANTS", "parse_budget", "search", "pareto_front"]

DEFAULT_WIDTHS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
# name -> config overrides; the FP-downsampling variant also changes the downsampling structure (spec 2.6).
VARIANTS: dict[str, dict] = {
    "binary": {"precision": "binary"},
    "binary+fpds": {"precision": "binary", "fp_downsample": True},
    "binary+fp_s3attn": {"precision": "binary_fp_s3attn"},
    "binary+fp_first": {"precision": "binary_fp_first"},
}


@dataclass(frozen=True)
class Budget:
    """Upper limits on weight memory (MiB) and MOPs; ``label`` says where they came from."""

    memory_mib: float
    mops: float
    label: str

    def admits(self, cost: ModelCost) -> bool:
        return cost.memory_mib <= self.memory_mib and cost.mops <= self.mops


@dataclass(frozen=True)
class Candidate:
    hidden_width: float
    intermediate_width: float
    variant: str
    cost: ModelCost

    @property
    def macs(self) -> int:
        """Total multiply-accumulates, the capacity proxy used for the Pareto front."""
        return self.cost.flops + self.cost.bops


def parse_budget(spec: str, model: str = "bhvit_tiny", **common) -> Budget:
    """``fp32:w1`` (the FP32 model of width 1; any width), or ``MIB:MOPS`` such as ``13.7:400``."""
    m = re.fullmatch(r"fp32:w([0-9.]+)", spec)
    if m:
        cost = config_cost(resolve_config(model, precision="fp32", width=float(m.group(1)), **common))
        return Budget(cost.memory_mib, cost.mops, spec)
    m = re.fullmatch(r"([0-9.]+):([0-9.]+)", spec)
    if m:
        return Budget(float(m.group(1)), float(m.group(2)), f"{m.group(1)} MiB, {m.group(2)} MOPs")
    raise ConfigError(f"budget {spec!r} not understood; use fp32:w1 (an FP32 model's cost) or MIB:MOPS (e.g. 13.7:400)")


def search(budget: Budget, model: str = "bhvit_tiny", widths: tuple[float, ...] = DEFAULT_WIDTHS,
           variants: tuple[str, ...] = tuple(VARIANTS), **common) -> list[Candidate]:
    """Every valid candidate that fits ``budget``, cheapest OPs first (then memory)."""
    fitting = []
    for hidden, inter, variant in itertools.product(widths, widths, variants):
        try:
            cfg: BHViTCfg = resolve_config(model, hidden_width=hidden, intermediate_width=inter,
                                           **VARIANTS[variant], **common)
        except ConfigError:
            continue  # e.g. widths whose MLP is not a multiple of the stage width
        cost = config_cost(cfg)
        if budget.admits(cost):
            fitting.append(Candidate(hidden, inter, variant, cost))
    return sorted(fitting, key=lambda c: (c.cost.mops, c.cost.memory_mib))


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates that no other beats on all of memory (lower), OPs (lower) and MACs (higher, a capacity proxy)."""
    def dominated(c: Candidate) -> bool:
        return any(o is not c and o.cost.memory_mib <= c.cost.memory_mib and o.cost.mops <= c.cost.mops
                   and o.macs >= c.macs and (o.cost.memory_mib, o.cost.mops, o.macs) != (c.cost.memory_mib,
                                                                                         c.cost.mops, c.macs)
                   for o in candidates)
    return [c for c in candidates if not dominated(c)]
