"""Budgeted mixed-precision search: which widths and precision maps fit a memory/OPs budget.

Candidates combine a stage-width multiplier, an MLP-width multiplier and a precision variant (all binary, FP
downsampling, FP stage-3 attention, FP first block). Costs come from :func:`~bhvit.models.cost.config_cost`, so the
search is exact for every candidate, not an extrapolation.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import BHViTCfg, ConfigError
from .cost import ModelCost, config_cost
from .factory import resolve_config

__all__ = [
    "Budget",
    "Candidate",
    "LatencyModel",
    "VARIANTS",
    "parse_budget",
    "search",
    "pareto_front",
    "fit_latency",
    "study_rows",
]

DEFAULT_WIDTHS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
# name -> config overrides; the FP-downsampling variant also changes the downsampling structure (models/README.md).
VARIANTS: dict[str, dict] = {
    "binary": {"precision": "binary"},
    "binary+fpds": {"precision": "binary", "fp_downsample": True},
    "binary+fp_s3attn": {"precision": "binary_fp_s3attn"},
    "binary+fp_first": {"precision": "binary_fp_first"},
}


@dataclass(frozen=True)
class LatencyModel:
    """``latency_ms = ms_per_mflop * MFLOPs + ms_per_mbop * MBOPs + overhead_ms``, fitted to measured models."""

    ms_per_mflop: float
    ms_per_mbop: float
    overhead_ms: float

    def predict(self, cost: ModelCost) -> float:
        return self.ms_per_mflop * cost.flops / 1e6 + self.ms_per_mbop * cost.bops / 1e6 + self.overhead_ms


def fit_latency(points: list[tuple[ModelCost, float]]) -> LatencyModel:
    """Least-squares fit of :class:`LatencyModel` (coefficients clipped at 0) to ``(cost, measured ms)`` pairs."""
    if len(points) < 3:
        raise ConfigError(f"a latency model needs at least 3 measured models, the bench file has {len(points)}")
    a = np.array([[c.flops / 1e6, c.bops / 1e6, 1.0] for c, _ in points])
    coef = np.clip(np.linalg.lstsq(a, np.array([ms for _, ms in points]), rcond=None)[0], 0, None)
    return LatencyModel(*map(float, coef))


@dataclass(frozen=True)
class Budget:
    """Upper limits on weight memory (MiB), MOPs and optionally predicted latency.

    ``label`` says where they came from.
    """

    memory_mib: float
    mops: float
    label: str
    latency_ms: float = math.inf
    latency_model: LatencyModel | None = None

    def admits(self, cost: ModelCost) -> bool:
        fits = cost.memory_mib <= self.memory_mib and cost.mops <= self.mops
        return fits and (self.latency_model is None or self.latency_model.predict(cost) <= self.latency_ms)


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


_BENCH_KEY = re.compile(r"tvm-(binary|fp32)-w([0-9.]+)(-fpds)?")


def _latency_budget(path: Path, limit: str | None, model: str, common: dict) -> Budget:
    """Budget from a ``scripts/bench_host.py --json`` file: the TVM rows fit the latency model; the limit is given
    in ms or defaults to the measured ``ort-fp32-w1`` (the FP32 baseline)."""
    try:
        rows = {r["model"]: r["median_ms"] for r in json.loads(Path(path).read_text())}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read bench file {path}: {e}") from None
    points = []
    for key, ms in rows.items():
        m = _BENCH_KEY.fullmatch(key)
        if m:
            cfg = resolve_config(
                model, precision=m.group(1), width=float(m.group(2)), fp_downsample=bool(m.group(3)), **common
            )
            points.append((config_cost(cfg), ms))
    if limit is None and "ort-fp32-w1" not in rows:
        raise ConfigError(f"{path} has no ort-fp32-w1 row; give the limit as latency:{path}:MS")
    ms = float(limit) if limit is not None else rows["ort-fp32-w1"]
    label = f"{ms:.1f} ms predicted from {path}" + ("" if limit is not None else " (ORT FP32 w=1 measured)")
    return Budget(math.inf, math.inf, label, ms, fit_latency(points))


def parse_budget(spec: str, model: str = "bhvit_tiny", **common) -> Budget:
    """``fp32:w1`` (the FP32 model of width 1; any width), ``MIB:MOPS`` such as ``13.7:400``, or
    ``latency:BENCH.json[:MS]`` (latency predicted from measured models; default limit ORT FP32 w=1's)."""
    m = re.fullmatch(r"latency:(.+?)(?::([0-9.]+))?", spec)
    if m:
        return _latency_budget(Path(m.group(1)), m.group(2), model, common)
    m = re.fullmatch(r"fp32:w([0-9.]+)", spec)
    if m:
        cost = config_cost(resolve_config(model, precision="fp32", width=float(m.group(1)), **common))
        return Budget(cost.memory_mib, cost.mops, spec)
    m = re.fullmatch(r"([0-9.]+):([0-9.]+)", spec)
    if m:
        return Budget(float(m.group(1)), float(m.group(2)), f"{m.group(1)} MiB, {m.group(2)} MOPs")
    raise ConfigError(
        f"budget {spec!r} not understood; use fp32:w1 (an FP32 model's cost), MIB:MOPS (e.g. "
        f"13.7:400) or latency:BENCH.json[:MS]"
    )


def search(
    budget: Budget,
    model: str = "bhvit_tiny",
    widths: tuple[float, ...] = DEFAULT_WIDTHS,
    variants: tuple[str, ...] = tuple(VARIANTS),
    **common,
) -> list[Candidate]:
    """Every valid candidate that fits ``budget``, cheapest OPs first (then memory)."""
    fitting = []
    for hidden, inter, variant in itertools.product(widths, widths, variants):
        try:
            cfg: BHViTCfg = resolve_config(
                model, hidden_width=hidden, intermediate_width=inter, **VARIANTS[variant], **common
            )
        except ConfigError:
            continue  # e.g. widths whose MLP is not a multiple of the stage width
        cost = config_cost(cfg)
        if budget.admits(cost):
            fitting.append(Candidate(hidden, inter, variant, cost))
    return sorted(fitting, key=lambda c: (c.cost.mops, c.cost.memory_mib))


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates that no other beats on all of memory (lower), OPs (lower) and MACs (higher, a capacity proxy)."""

    def dominated(c: Candidate) -> bool:
        return any(
            o is not c
            and o.cost.memory_mib <= c.cost.memory_mib
            and o.cost.mops <= c.cost.mops
            and o.macs >= c.macs
            and (o.cost.memory_mib, o.cost.mops, o.macs) != (c.cost.memory_mib, c.cost.mops, c.macs)
            for o in candidates
        )

    return [c for c in candidates if not dominated(c)]


def study_rows(candidates: list[Candidate], model: str = "bhvit_tiny") -> str:
    """The candidates as ``[[row]]`` tables of a study file (``scripts/studies/*.toml``), ready to train."""
    blocks = []
    for c in candidates:
        overrides = VARIANTS[c.variant]
        lines = [
            "[[row]]",
            f'name = "{c.variant.replace("+", "-")}-h{c.hidden_width:g}-i{c.intermediate_width:g}"',
            'tables = ["search"]',
            f'model = "{model}"',
            f"hidden_width = {c.hidden_width}",
            f"intermediate_width = {c.intermediate_width}",
            f'precision = "{overrides["precision"]}"',
        ]
        if overrides.get("fp_downsample"):
            lines.append("fp_downsample = true")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
