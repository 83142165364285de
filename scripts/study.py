#!/usr/bin/env python3
"""Reproduce the width-precision study: plan the training runs, run them, and tabulate the results.

A study file (TOML, see ``scripts/studies/``) lists table rows; each row is an architecture (width, hidden and
intermediate multipliers, FP downsampling) and a phase-2 precision. The runner plans one FP phase-1 job per
architecture and seed, and one phase-2 job per row and seed that warm-starts from the phase-1 job of the *same*
architecture. Jobs whose result exists are skipped, interrupted ones are resumed, so re-running is always safe.

    python3 scripts/study.py scripts/studies/thesis.toml --list          # one shell command per job
    python3 scripts/study.py scripts/studies/thesis.toml --run 7         # e.g. as a SLURM array task
    python3 scripts/study.py scripts/studies/mini.toml                   # run everything here, then collect
    python3 scripts/study.py scripts/studies/thesis.toml --collect        # tables and figures only
    python3 scripts/study.py scripts/studies/thesis.toml --submit slurm --gpus-per-job 4 --time 24:00:00
    python3 scripts/study.py scripts/studies/thesis.toml --status         # done / running / queued / failed

After training, every finished row is compiled for this host with ``bhvit-compile --eval-dir`` on its test split
(``<out>/deploy/<row>_s<seed>``); the tables then show the deployed top-1 beside the PyTorch top-1.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import statistics
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import click
from bhvit.models import resolve_config, variant_name
from bhvit.models.cost import config_cost
from bhvit.train.layout import BEST, LAST, RESULT, phase_dir
from study_slurm import slurm_command, slurm_options

ARCH_KEYS = ("model", "width", "hidden_width", "intermediate_width", "fp_downsample")


@dataclass(frozen=True)
class Row:
    """One table row: an architecture and the precision of its phase 2."""

    name: str
    arch: tuple[tuple[str, object], ...]
    precision: str
    tables: tuple[str, ...]

    @property
    def arch_name(self) -> str:
        a = dict(self.arch)
        return variant_name(a.pop("model", "bhvit_tiny"), always=("width",), **a)


@dataclass(frozen=True)
class Study:
    name: str
    out: Path
    seeds: tuple[int, ...]
    train_args: dict
    rows: tuple[Row, ...]
    data: dict = field(default_factory=dict)
    teacher: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    index: int
    name: str
    phase: int
    out: Path
    args: tuple[str, ...]
    needs: tuple[str, ...]

    def status(self) -> str:
        phase = phase_dir(self.out, self.phase)
        if (phase / RESULT).exists():
            return "done"
        return "partial" if (phase / LAST).exists() else "todo"

    def command(self, launcher: list[str]) -> list[str]:
        resume = ["--resume"] if self.status() == "partial" else []
        return [*launcher, *self.args, *resume]


def load_study(
    path: Path,
    epochs: int | None = None,
    seeds: tuple[int, ...] | None = None,
    only: tuple[str, ...] = (),
    out: Path | None = None,
) -> Study:
    """Read a study file; ``epochs``/``seeds``/``only`` shrink it (e.g. for CI), ``out`` moves it."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise click.UsageError(f"cannot read study file {path}: {e}") from None
    train_args = dict(raw.get("train", {}))
    if epochs is not None:
        train_args["epochs"] = epochs
    rows = []
    for r in raw.get("row", []):
        arch = tuple((k, r[k]) for k in ARCH_KEYS if k in r)
        rows.append(Row(r["name"], arch, r.get("precision", "binary"), tuple(r.get("tables", ["table3"]))))
    if only:
        unknown = set(only) - {r.name for r in rows}
        if unknown:
            raise click.UsageError(f"unknown rows {sorted(unknown)}; the study has {[r.name for r in rows]}")
        rows = [r for r in rows if r.name in only]
    meta = raw.get("study", {})
    default_out = Path(meta.get("out", f"runs/study/{path.stem}"))
    if out is not None:  # paths inside the study's folder (e.g. its data) move with it
        for k, v in train_args.items():
            if isinstance(v, str) and Path(v).is_relative_to(default_out):
                train_args[k] = str(out / Path(v).relative_to(default_out))
    return Study(
        meta.get("name", path.stem),
        out or default_out,
        tuple(seeds or meta.get("seeds", (0,))),
        train_args,
        tuple(rows),
        raw.get("data", {}),
        raw.get("teacher", {}),
    )


# bhvit-train switches that have an explicit --no- form; other booleans are plain flags.
PAIRED_SWITCHES = ("distill", "amp")


def _options(d: dict) -> list[str]:
    """``{"fp_downsample": True, "epochs": 5, "distill": False}`` -> bhvit-train options."""
    out = []
    for k, v in d.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out += [flag] if v else ([f"--no-{k.replace('_', '-')}"] if k in PAIRED_SWITCHES else [])
        else:
            out += [flag, str(v)]
    return out


def plan(study: Study) -> list[Job]:
    """The teacher fine-tuning job (if the study has one), phase-1 jobs (one per architecture and seed), then the
    phase-2 jobs that depend on them."""
    phase1, phase2 = {}, []
    train_args, needs = dict(study.train_args), ()
    if study.teacher:
        out = study.out / "teacher"
        shared = {k: train_args[k] for k in ("dataset", "data_dir", "workers") if k in train_args}
        phase1["teacher"] = (out, _options(study.teacher) + _options(shared) + ["--phase", "1", "--out", str(out)])
        train_args["teacher_checkpoint"] = phase_dir(out, 1) / BEST
        train_args["teacher"] = study.teacher["model"]
        needs = ("teacher",)
    for seed in study.seeds:
        for row in study.rows:
            p1_name = f"p1/{row.arch_name}_s{seed}"
            p1_out = study.out / p1_name
            if p1_name not in phase1:
                phase1[p1_name] = (
                    p1_out,
                    _options(dict(row.arch))
                    + _options(train_args)
                    + ["--seed", str(seed), "--phase", "1", "--out", str(p1_out)],
                )
            p2_out = study.out / f"p2/{row.name}_s{seed}"
            args = (
                _options(dict(row.arch))
                + _options(train_args)
                + [
                    "--seed",
                    str(seed),
                    "--phase",
                    "2",
                    "--precision",
                    row.precision,
                    "--init-from",
                    str(phase_dir(p1_out, 1) / BEST),
                    "--out",
                    str(p2_out),
                ]
            )
            phase2.append((f"p2/{row.name}_s{seed}", p2_out, args, (p1_name,)))
    jobs = [
        Job(i, name, 1, out, tuple(args), () if name == "teacher" else needs)
        for i, (name, (out, args)) in enumerate(phase1.items())
    ]
    jobs += [Job(len(jobs) + i, name, 2, out, tuple(args), needs) for i, (name, out, args, needs) in enumerate(phase2)]
    return jobs


def prepare_data(study: Study) -> None:
    """Materialise a bundled data source named in the study file (``[data] source = "sklearn-digits"``)."""
    source = study.data.get("source")
    if source is None:
        return
    if source != "sklearn-digits":
        raise click.UsageError(f"unknown data source {source!r} (known: sklearn-digits)")
    root = Path(study.train_args["data_dir"])
    if (root / "test").is_dir():
        return
    write_digits_folder(root, size=int(study.data.get("size", 64)), test_fraction=0.25)


def write_digits_folder(root: Path, size: int, test_fraction: float, seed: int = 0) -> Path:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images) as an RGB ImageFolder, upscaled to ``size``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    n_test = int(len(order) * test_fraction)
    for rank, i in enumerate(order):
        split = "test" if rank < n_test else "train"
        folder = root / split / f"digit_{digits.target[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        img = (digits.images[i] / 16.0 * 255).astype(np.uint8)
        Image.fromarray(img).resize((size, size), Image.BICUBIC).convert("RGB").save(folder / f"{i:04d}.png")
    return root


def run_job(job: Job, jobs: list[Job], launcher: list[str]) -> None:
    by_name = {j.name: j for j in jobs}
    missing = [n for n in job.needs if by_name[n].status() != "done"]
    if missing:
        raise click.ClickException(f"job {job.index} ({job.name}) needs {', '.join(missing)} to finish first")
    if job.status() == "done":
        click.echo(f"[{job.index}] {job.name}: done, skipped")
        return
    cmd = job.command(launcher)
    click.echo(f"[{job.index}] {job.name}: {shlex.join(cmd)}")
    if subprocess.run(cmd).returncode != 0:
        raise click.ClickException(f"job {job.index} ({job.name}) failed; re-run the same command to resume it")


def deploy_dir(study: Study, row: Row, seed: int) -> Path:
    return study.out / "deploy" / f"{row.name}_s{seed}"


def eval_split(study: Study) -> Path:
    """The test split the study's models are scored on: Pets (found by its annotations) or ``<data_dir>/test``."""
    root = Path(study.train_args.get("data_dir", "data"))
    if study.train_args.get("dataset", "pets") == "pets":
        return root
    return next((root / d for d in ("test", "val") if (root / d).is_dir()), root)


def deploy_command(study: Study, row: Row, seed: int) -> list[str]:
    """``bhvit-compile`` of a row's phase-2 best checkpoint for this host, scored on the test split."""
    checkpoint = study.out / f"p2/{row.name}_s{seed}" / "phase2" / "best.safetensors"
    return [
        *(sys.executable, "-m", "bhvit.compile", str(checkpoint), "--target", "host"),
        *("--output", str(deploy_dir(study, row, seed)), "--overwrite", "--eval-dir", str(eval_split(study))),
    ]


def deployed_evaluation(study: Study, row: Row, seed: int) -> dict | None:
    """The ``"evaluation"`` record of a row's deployed artifact, if it was compiled and scored."""
    meta = deploy_dir(study, row, seed) / "metadata.json"
    return json.loads(meta.read_text()).get("evaluation") if meta.exists() else None


def deploy(study: Study) -> None:
    """Compile and score every trained row that has no deployed evaluation yet."""
    for seed in study.seeds:
        for row in study.rows:
            trained = (study.out / f"p2/{row.name}_s{seed}" / "phase2" / RESULT).exists()
            if not trained or deployed_evaluation(study, row, seed) is not None:
                continue
            cmd = deploy_command(study, row, seed)
            click.echo(f"[deploy] {row.name}_s{seed}: {shlex.join(cmd)}")
            if subprocess.run(cmd).returncode != 0:
                raise click.ClickException(f"compiling {row.name}_s{seed} failed; re-run with --deploy to retry")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def collect(study: Study) -> list[dict]:
    """Table rows: test top-1 mean/std over the seeds that finished, the cost model, and bench results if present."""
    rows = []
    for row in study.rows:
        results = [
            json.loads(p.read_text())
            for seed in study.seeds
            if (p := phase_dir(study.out / f"p2/{row.name}_s{seed}", 2) / RESULT).exists()
        ]
        arch = dict(row.arch)
        cost = config_cost(
            resolve_config(
                arch.pop("model", "bhvit_tiny"),
                precision=row.precision,
                img_size=study.train_args.get("img_size"),
                **arch,
            )
        )
        top1 = [r["test_top1"] for r in results]
        mean, std = _mean_std(top1) if top1 else (math.nan, math.nan)
        deployed = [e["artifact_top1"] for s in study.seeds if (e := deployed_evaluation(study, row, s)) is not None]
        dmean, dstd = _mean_std(deployed) if deployed else (math.nan, math.nan)
        entry = {
            "tables": row.tables,
            "row": row.name,
            "precision": row.precision,
            "seeds": len(top1),
            "top1_mean": mean,
            "top1_std": std,
            "deployed_seeds": len(deployed),
            "deployed_top1_mean": dmean,
            "deployed_top1_std": dstd,
            **cost.row(),
        }
        bench = study.out / "bench" / f"{row.name}.json"
        if bench.exists():
            b = json.loads(bench.read_text())
            entry["latency_ms"], entry["peak_ram_mib"] = b["latency_ms"]["p50"], b["peak_rss_mb"]
        rows.append(entry)
    return rows


def _pm(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.2f} ± {std:.2f}"


def write_tables(rows: list[dict], out: Path) -> list[Path]:
    written = []
    for table in sorted({t for r in rows for t in r["tables"]}):
        part = [r for r in rows if table in r["tables"]]
        cols = ["row", "precision", "seeds", "top1_mean", "top1_std", "deployed_top1_mean", "deployed_top1_std"]
        cols += ["memory_mib", "mops", "deployable_mib"]
        extra_cols = [c for c in ("latency_ms", "peak_ram_mib") if any(c in r for r in part)]
        with open(out / f"{table}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, cols + extra_cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(part)
        lines = [
            "| model | precision | seeds | test top-1 (%) | deployed top-1 (%) | memory (MiB) | MOPs "
            + "| deployable (MiB) |"
            + "".join(f" {c} |" for c in extra_cols),
            "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(extra_cols),
        ]
        for r in part:
            acc, deployed = (_pm(r[f"{k}_mean"], r[f"{k}_std"]) for k in ("top1", "deployed_top1"))
            extra = "".join(f" {r.get(c, float('nan')):.1f} |" for c in extra_cols)
            lines.append(
                f"| {r['row']} | {r['precision']} | {r['seeds']} | {acc} | {deployed} | {r['memory_mib']:.2f} | "
                f"{r['mops']:.1f} | {r['deployable_mib']:.2f} |{extra}"
            )
        (out / f"{table}.md").write_text("\n".join(lines) + "\n")
        written += [out / f"{table}.csv", out / f"{table}.md"]
    return written


def plot(rows: list[dict], out: Path, accuracy: str = "top1") -> list[Path]:
    """Figures 2 and 3 (accuracy vs memory / OPs, FP32 budget lines) and, with bench data, accuracy vs latency.

    ``accuracy``: ``"top1"`` plots the PyTorch test top-1, ``"deployed_top1"`` the compiled artifacts'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if not math.isnan(r[f"{accuracy}_mean"])]
    fp32 = [r for r in done if r["precision"] in ("fp", "fp32")]
    axes = [("memory_mib", "weight memory (MiB)", "accuracy_vs_memory.png"), ("mops", "MOPs", "accuracy_vs_ops.png")]
    if any("latency_ms" in r for r in done):
        axes.append(("latency_ms", "measured latency (ms)", "accuracy_vs_latency.png"))
    written = []
    for key, label, name in axes:
        pts = [r for r in done if key in r]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.errorbar(
            [r[key] for r in pts],
            [r[f"{accuracy}_mean"] for r in pts],
            yerr=[r[f"{accuracy}_std"] for r in pts],
            fmt="o",
            capsize=3,
        )
        for r in pts:
            y = r[f"{accuracy}_mean"]
            ax.annotate(r["row"], (r[key], y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for r in fp32:
            if key in r:
                ax.axvline(r[key], color="k", linestyle="--", linewidth=0.8, label=f"{r['row']} budget")
        if key == "latency_ms":
            front = sorted(pts, key=lambda r: r[key])
            best, line = -math.inf, []
            for r in front:
                if r[f"{accuracy}_mean"] > best:
                    best = r[f"{accuracy}_mean"]
                    line.append(r)
            ax.plot([r[key] for r in line], [r[f"{accuracy}_mean"] for r in line], "r-", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("deployed test top-1 (%)" if accuracy == "deployed_top1" else "test top-1 (%)")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(out / name)
    return written


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("study_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--list", "list_jobs", is_flag=True, help="Print every job (index, status, needs, command) and exit.")
@click.option(
    "--run",
    "run_index",
    type=int,
    default=None,
    help="Run only job INDEX (its dependencies must be done), e.g. as a SLURM array task.",
)
@click.option("--collect", "collect_only", is_flag=True, help="Only build tables and figures from finished runs.")
@click.option(
    "--deploy",
    "deploy_only",
    is_flag=True,
    help="Only compile every trained row for this host and score it on the test split (bhvit-compile --eval-dir), "
    "then build tables and figures (e.g. after a SLURM array has trained the rows).",
)
@click.option("--no-deploy", is_flag=True, help="Do not compile and score the trained rows (no deployed top-1 column).")
@click.option(
    "--plot-accuracy",
    type=click.Choice(["pytorch", "deployed"]),
    default="pytorch",
    show_default=True,
    help="Which test top-1 the figures plot: the PyTorch checkpoints' or the deployed artifacts'.",
)
@click.option(
    "--launcher",
    default=f"{shlex.quote(sys.executable)} -m bhvit.train",
    show_default=True,
    help="How a job starts training, e.g. 'torchrun --nproc_per_node 4 -m bhvit.train'.",
)
@click.option("--epochs", type=int, default=None, help="Override the study's epochs per phase (smoke runs).")
@click.option("--seeds", default=None, help="Override the study's seeds, comma-separated (e.g. 0 or 0,1,2).")
@click.option("--only", default="", help="Comma-separated row names to keep (default: all rows).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Study folder [default: the study file's [study] out].",
)
@slurm_options
def main(
    study_file,
    list_jobs,
    run_index,
    collect_only,
    deploy_only,
    no_deploy,
    plot_accuracy,
    launcher,
    epochs,
    seeds,
    only,
    out,
    **slurm,
):
    """Plan, run (or list, or submit to SLURM) and tabulate the runs of a width-precision study file."""
    study = load_study(
        study_file,
        epochs,
        tuple(int(s) for s in seeds.split(",")) if seeds else None,
        tuple(filter(None, only.split(","))),
        out,
    )
    jobs = plan(study)
    launch = shlex.split(launcher)
    if list_jobs:
        for j in jobs:
            click.echo(f"{j.index}\t{j.status()}\t{','.join(j.needs) or '-'}\t{shlex.join(j.command(launch))}")
        return
    rerun = [sys.executable, str(Path(__file__).resolve()), str(study_file.resolve())]  # --run INDEX on SLURM
    given = (("--epochs", epochs), ("--seeds", seeds), ("--only", only))
    rerun += [str(a) for flag, value in given if value for a in (flag, value)]
    rerun += ["--out", str(out.resolve())] if out else []
    if slurm_command(jobs, study.name, rerun, launch, lambda: prepare_data(study), **slurm):
        return
    if not (collect_only or deploy_only):
        prepare_data(study)
        for job in jobs if run_index is None else [jobs[run_index] if 0 <= run_index < len(jobs) else None]:
            if job is None:
                raise click.UsageError(f"--run {run_index}: the study has jobs 0..{len(jobs) - 1}")
            run_job(job, jobs, launch)
        if run_index is not None:
            return
    if deploy_only or not (collect_only or no_deploy):
        deploy(study)
    study.out.mkdir(parents=True, exist_ok=True)
    rows = collect(study)
    accuracy = "deployed_top1" if plot_accuracy == "deployed" else "top1"
    for path in write_tables(rows, study.out) + plot(rows, study.out, accuracy):
        click.echo(f"Saved {path}")
    for table in sorted({t for r in rows for t in r["tables"]}):
        click.echo((study.out / f"{table}.md").read_text())


if __name__ == "__main__":
    main()
