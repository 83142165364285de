"""``bhvit-cost``: the cost-model table (memory, OPs, deployable size) for BHViT variants."""

from __future__ import annotations

import json
from dataclasses import dataclass

import click

from .config import ConfigError
from .cost import ModelCost, config_cost
from .factory import resolve_config
from .options import model_options, model_overrides
from .search import DEFAULT_WIDTHS, VARIANTS, pareto_front, parse_budget, search, study_rows

# The thesis' Table 3 sweep, printed when no model option is given.
THESIS_SWEEP = (
    {"precision": "fp32", "width": 1.0},
    {"precision": "binary", "width": 1.0},
    {"precision": "binary", "width": 2.0},
    {"precision": "binary", "width": 3.0},
    {"precision": "binary", "width": 3.0, "fp_downsample": True},
)
PLOT_WIDTHS = (1.0, 1.5, 2.0, 2.5, 3.0)


@dataclass(frozen=True)
class CostRow:
    """A labelled cost-table row and its ratios to the FP32 w=1 budget."""

    model: str
    overrides: dict
    cost: ModelCost
    budget: ModelCost

    def as_dict(self) -> dict:
        cfg = resolve_config(self.model, **self.overrides)
        return {
            "model": self.model,
            "width": cfg.width,
            "hidden_width": cfg.hidden_width if cfg.hidden_width is not None else cfg.width,
            "intermediate_width": cfg.intermediate_width if cfg.intermediate_width is not None else cfg.width,
            "precision": precision_label(self.overrides),
            **self.cost.row(),
            "memory_ratio": self.cost.weight_bytes / self.budget.weight_bytes,
            "ops_ratio": self.cost.ops / self.budget.ops,
        }


def precision_label(overrides: dict) -> str:
    label = str(overrides.get("precision", "binary"))
    return label + ("+fpds" if overrides.get("fp_downsample") else "")


def cost_of(model: str, **overrides) -> ModelCost:
    return config_cost(resolve_config(model, **overrides))


def _format_table(rows: list[dict]) -> str:
    cols = [
        ("model", "model", "{}"),
        ("w", "width", "{:g}"),
        ("hid", "hidden_width", "{:g}"),
        ("int", "intermediate_width", "{:g}"),
        ("precision", "precision", "{}"),
        ("memory MiB", "memory_mib", "{:.2f}"),
        ("MOPs", "mops", "{:.1f}"),
        ("FLOPs", "flops", "{:,}"),
        ("BOPs", "bops", "{:,}"),
        ("deploy MiB", "deployable_mib", "{:.2f}"),
        ("mem/FP32w1", "memory_ratio", "{:.3f}"),
        ("OPs/FP32w1", "ops_ratio", "{:.3f}"),
    ]
    cells = [[fmt.format(r[key]) for _, key, fmt in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _, _) in enumerate(cols)]
    lines = ["  ".join(h.rjust(w) for (h, _, _), w in zip(cols, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _plot(path: str, model: str, common: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = cost_of(model, precision="fp32", width=1.0, **common)
    series = {"binary": {}, "binary + FP downsampling": {"fp_downsample": True}}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, extra in series.items():
        costs = [cost_of(model, precision="binary", width=w, **extra, **common) for w in PLOT_WIDTHS]
        axes[0].plot(PLOT_WIDTHS, [c.memory_mib for c in costs], "o-", label=label)
        axes[1].plot(PLOT_WIDTHS, [c.mops for c in costs], "o-", label=label)
    for ax, value, unit in ((axes[0], budget.memory_mib, "weight memory (MiB)"), (axes[1], budget.mops, "MOPs")):
        ax.axhline(value, color="k", linestyle="--", label="FP32 w=1 budget")
        ax.set_xlabel("width multiplier w")
        ax.set_ylabel(unit)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"{model}: cost vs width")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _run_search(
    model: str,
    budget_spec: str,
    common: dict,
    as_json: bool,
    plot: str | None,
    widths: tuple[float, ...],
    rows_file: str | None,
) -> None:
    try:
        budget = parse_budget(budget_spec, model, **common)
        found = search(budget, model, widths, **common)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    front = pareto_front(found)
    rows = [
        {
            "hidden_width": c.hidden_width,
            "intermediate_width": c.intermediate_width,
            "variant": c.variant,
            **c.cost.row(),
            "macs": c.macs,
            "pareto": c in front,
            **({"predicted_ms": budget.latency_model.predict(c.cost)} if budget.latency_model else {}),
        }
        for c in found
    ]
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
    else:
        click.echo(
            f"budget: {budget.label} = {budget.memory_mib:.2f} MiB, {budget.mops:.1f} MOPs"
            + (f", {budget.latency_ms:.1f} ms" if budget.latency_model else "")
            + f"; {len(found)} candidates fit, {len(front)} on the Pareto front (*)"
        )
        latency = budget.latency_model is not None
        click.echo(
            f"{'hid':>5} {'int':>5} {'variant':18} {'memory MiB':>10} {'MOPs':>8} {'deploy MiB':>10}"
            + (f" {'pred. ms':>8}" if latency else "")
        )
        for r in rows:
            click.echo(
                f"{r['hidden_width']:5g} {r['intermediate_width']:5g} {r['variant']:18} "
                f"{r['memory_mib']:10.2f} {r['mops']:8.1f} {r['deployable_mib']:10.2f}"
                + (f" {r['predicted_ms']:8.1f}" if latency else "")
                + (" *" if r["pareto"] else "")
            )
    if plot:
        _plot_search(plot, found, front, budget)
        click.echo(f"Saved plot to {plot}", err=True)
    if rows_file:
        with open(rows_file, "w") as f:
            f.write(study_rows(front, model))
        click.echo(
            f"Saved the Pareto front as study rows to {rows_file} (paste into a scripts/studies/*.toml)", err=True
        )


def _plot_search(path: str, found: list, front: list, budget) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for variant in VARIANTS:
        pts = [c for c in found if c.variant == variant]
        ax.scatter([c.cost.memory_mib for c in pts], [c.cost.mops for c in pts], label=variant, alpha=0.6)
    ax.plot(
        [c.cost.memory_mib for c in sorted(front, key=lambda c: c.cost.memory_mib)],
        [c.cost.mops for c in sorted(front, key=lambda c: c.cost.memory_mib)],
        "k.",
        markersize=12,
        label="Pareto front",
    )
    ax.axvline(budget.memory_mib, color="k", linestyle="--")
    ax.axhline(budget.mops, color="k", linestyle="--", label=f"budget ({budget.label})")
    ax.set_xlabel("weight memory (MiB)")
    ax.set_ylabel("MOPs")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bhvit", prog_name="bhvit-cost")
@model_options(
    width={
        "multiple": True,
        "help": "Width multiplier of stages and MLPs; repeat for several rows (e.g. --width 1 --width 3).",
    },
    precision={
        "help": "Precision preset: binary, fp32, binary_fpds, binary_fp_s3attn, binary_fp_first "
        "[default: binary when any model option is given, else the thesis sweep]."
    },
)
@click.option("--per-layer", is_flag=True, help="Also list every counted layer (name, kind, precision, MACs, bits).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per row instead of the table.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the thesis' Figure 2 (memory and OPs vs width, FP32 budget line) to this PNG; with "
    "--search, the candidates and their Pareto front instead.",
)
@click.option(
    "--search",
    "do_search",
    is_flag=True,
    help="Enumerate stage/MLP widths and precision variants (all binary, FP downsampling, FP stage-3 "
    "attention, FP first block) and list those that fit --budget, cheapest first.",
)
@click.option(
    "--study-rows",
    "study_rows_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --search: write the Pareto-front candidates as [[row]] tables for a study file, so "
    "scripts/study.py can train them.",
)
@click.option(
    "--budget",
    default="fp32:w1",
    show_default=True,
    help="Budget for --search: fp32:wN (the FP32 model of width N), MIB:MOPS (e.g. 13.7:400), or "
    "latency:BENCH.json[:MS] (latency predicted from the TVM rows of a scripts/bench_host.py --json "
    "file; the limit defaults to its measured ORT FP32 w=1).",
)
def main(
    model,
    precision,
    width,
    hidden_width,
    intermediate_width,
    fp_downsample,
    img_size,
    num_classes,
    per_layer,
    as_json,
    plot,
    do_search,
    study_rows_file,
    budget,
):
    """Print the cost model of BHViT variants (rules: models/README.md). With no model option: the thesis sweep."""
    common = model_overrides(num_classes=num_classes, img_size=img_size)
    if study_rows_file and not do_search:
        raise click.UsageError("--study-rows writes the Pareto front of a search: add --search")
    if do_search:
        _run_search(model, budget, common, as_json, plot, tuple(width) or DEFAULT_WIDTHS, study_rows_file)
        return
    custom = precision or width or hidden_width or intermediate_width or fp_downsample
    try:
        if custom:
            variants = [
                {
                    "precision": precision or "binary",
                    "width": w,
                    "hidden_width": hidden_width,
                    "intermediate_width": intermediate_width,
                    "fp_downsample": fp_downsample or None,
                }
                for w in (width or (1.0,))
            ]
        else:
            variants = [dict(v) for v in THESIS_SWEEP]
        variants = [{k: v for k, v in v.items() if v is not None} for v in variants]
        budget = cost_of(model, precision="fp32", width=1.0, **common)
        rows = [CostRow(model, {**v, **common}, cost_of(model, **v, **common), budget) for v in variants]
        if plot:
            _plot(plot, model, common)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    for row in rows:
        d = row.as_dict()
        if as_json:
            if per_layer:
                d["layers"] = row.cost.layer_rows()
            click.echo(json.dumps(d))
    if not as_json:
        click.echo(_format_table([r.as_dict() for r in rows]))
        if per_layer:
            for row in rows:
                click.echo(f"\n{row.model} {precision_label(row.overrides)} w={row.overrides.get('width', 1):g}")
                for layer in row.cost.layers:
                    click.echo(
                        f"  {layer.name:45s} {layer.kind:9s} {layer.precision:6s} {layer.macs:>14,} MACs "
                        f"{layer.weight_bits:>12,} bits"
                    )
    if plot:
        click.echo(f"Saved plot to {plot}", err=True)
