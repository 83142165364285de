"""Run a study on a SLURM cluster: one ``sbatch`` job per unfinished study job, chained with ``afterok``
dependencies, each running ``study.py --run INDEX``; and the state of every job from its run directory and
``squeue``.

What is submitted is recorded in the job's own folder: ``slurm-job`` holds the SLURM job id of the latest
submission and ``slurm-<id>.log`` its output. A job still queued or running is not submitted twice, so submitting
again after a failure, a time limit or a preemption resubmits exactly what is not done, and ``--run`` resumes a
partial run from its last epoch.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from study import Job

JOB_ID_FILE = "slurm-job"
LOG_PATTERN = "slurm-{}.log"  # sbatch writes %j as the job id
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED")
RUNNING = ("RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING")
TIME_FORMAT = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$")  # the formats sbatch --time accepts
MARK = "bhvit-study:"  # prefix of the start/finish lines each job script writes to its log


@dataclass(frozen=True)
class SbatchOptions:
    """Resources asked of SLURM for every job of the study."""

    partition: str | None = None
    gpus_per_job: int = 0
    time: str | None = None
    mem: str | None = None
    account: str | None = None
    sbatch_args: tuple[str, ...] = ()

    def args(self) -> list[str]:
        out = ["--nodes=1", "--ntasks=1"]
        for flag, value in (("partition", self.partition), ("time", self.time), ("mem", self.mem)):
            out += [f"--{flag}={value}"] if value else []
        out += [f"--account={self.account}"] if self.account else []
        out += [f"--gres=gpu:{self.gpus_per_job}"] if self.gpus_per_job else []
        return out + [a for extra in self.sbatch_args for a in shlex.split(extra)]


def slurm_options(f):
    """The click options of the SLURM path; ``main`` passes them on to :func:`slurm_command`."""

    def check_time(ctx, param, value):
        if value is not None and not TIME_FORMAT.match(value):
            raise click.BadParameter("use minutes, HH:MM:SS or D-HH:MM:SS (as sbatch --time)")
        return value

    options = [
        click.option(
            "--submit",
            type=click.Choice(["slurm"]),
            default=None,
            help="Submit every unfinished job to SLURM (sbatch), chained by afterok dependencies, and exit.",
        ),
        click.option(
            "--dry-run", is_flag=True, help="With --submit: print the submission as a shell script, submit nothing."
        ),
        click.option(
            "--status",
            "show_status",
            is_flag=True,
            help="Print every job's state (done, running, queued, failed, todo) from its run folder and squeue.",
        ),
        click.option("--partition", default=None, help="SLURM partition of every job [default: the cluster's]."),
        click.option(
            "--gpus-per-job",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="GPUs per job (--gres=gpu:N); above 1 each job trains with torchrun on N processes.",
        ),
        click.option("--time", default=None, callback=check_time, help="Time limit per job, e.g. 12:00:00."),
        click.option("--mem", default=None, help="Memory per node, e.g. 32G."),
        click.option("--account", default=None, help="SLURM account to charge."),
        click.option(
            "--sbatch-arg",
            "sbatch_args",
            multiple=True,
            help="Extra sbatch options, e.g. --sbatch-arg '--qos=high --cpus-per-task=8' (repeatable).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def job_launcher(launcher: list[str], gpus: int, explicit: bool) -> list[str]:
    """The launcher a SLURM job trains with: torchrun over the job's GPUs unless the user chose one."""
    if explicit or gpus <= 1:
        return launcher
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={gpus}",
        "-m",
        "bhvit.train",
    ]


def job_script(job: Job, run: list[str]) -> str:
    """The batch script of one job: ``run`` (``study.py ... --run INDEX``) as a job step, between two log lines
    that say when it started and ended."""
    what = f"job {job.index} ({job.name})"
    stamp = 'now=$(date +%s.%N); when="$(date -u -d @$now "+%F %T UTC") (unix $now)"'
    return "\n".join(
        [
            "#!/bin/bash",
            stamp,
            f'echo "{MARK} {what} started at $when on $(hostname), SLURM job $SLURM_JOB_ID"',
            f"srun --ntasks=1 {shlex.join(run)}",
            "rc=$?",
            stamp,
            f'echo "{MARK} {what} finished at $when with exit code $rc"',
            "exit $rc",
            "",
        ]
    )


def recorded_id(job: Job) -> str | None:
    path = job.out / JOB_ID_FILE
    return path.read_text().strip() if path.exists() else None


def queue() -> dict[str, tuple[str, str]] | None:
    """``{job id: (state, reason)}`` of this user's jobs SLURM still knows, or None without a reachable SLURM."""
    if shutil.which("squeue") is None:
        return None
    cmd = ["squeue", "--me", "--states=all", "--noheader", "--format=%i|%T|%r"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        why = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        click.echo(f"squeue failed, so SLURM's view of the jobs is unknown: {why[0]}", err=True)
        return None
    rows = (line.split("|") for line in result.stdout.splitlines() if line.count("|") == 2)
    return {i: (state, reason) for i, state, reason in rows}


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def job_state(job: Job, jobs_in_queue: dict[str, tuple[str, str]] | None) -> tuple[str, str]:
    """``(state, detail)``: done, running, queued, failed or todo, from the run folder, then SLURM's queue, then the
    job's own log (SLURM keeps no record of finished jobs without accounting storage)."""
    local = job.status()
    if local == "done":
        return "done", ""
    resumes = "partial run: resumes from its last epoch" if local == "partial" else ""
    slurm_id = recorded_id(job)
    if slurm_id is None:
        return "todo", resumes or "not submitted"
    log = job.out / LOG_PATTERN.format(slurm_id)
    if jobs_in_queue is None:
        return "todo", f"SLURM job {slurm_id}, state unknown (squeue not reachable); log {log}"
    state, reason = jobs_in_queue.get(slurm_id, ("", ""))
    if state in QUEUED:
        return "queued", f"SLURM job {slurm_id} ({reason})"
    if state in RUNNING:
        return "running", f"SLURM job {slurm_id}, log {log}"
    if not log.exists():
        why = f"{state} {reason}".strip() or "a dependency failed, or it was cancelled"
        return "failed", f"SLURM job {slurm_id} never started ({why})"
    why = f"{state}: " if state else ""
    return "failed", f"SLURM job {slurm_id}, {why}{_last_line(log)} (log {log})" + (f"; {resumes}" if resumes else "")


def print_status(jobs: Sequence[Job]) -> dict[str, int]:
    """Print one line per job and a summary; returns the count of each state."""
    jobs_in_queue = queue()
    counts: dict[str, int] = {}
    for job in jobs:
        state, detail = job_state(job, jobs_in_queue)
        counts[state] = counts.get(state, 0) + 1
        click.echo(f"{job.index}\t{state}\t{job.name}\t{detail}")
    click.echo(", ".join(f"{n} {state}" for state, n in counts.items()))
    return counts


def submit_jobs(
    jobs: Sequence[Job], study_name: str, run: list[str], launcher: list[str], options: SbatchOptions, dry_run: bool
) -> dict[int, str]:
    """Submit every job that is neither done nor queued/running, each after the jobs it needs (``afterok``);
    ``run`` is the ``study.py`` command line (with the study's overrides) that ``--run INDEX`` is appended to.
    With ``dry_run`` print the submission as a shell script instead. Returns {study job index: SLURM job id}."""
    if not dry_run and shutil.which("sbatch") is None:
        raise click.ClickException("sbatch not found: --submit slurm needs SLURM's client commands (try --dry-run)")
    jobs_in_queue = queue()
    if jobs_in_queue is None and not dry_run:
        raise click.ClickException("cannot read SLURM's queue (squeue), so cannot tell what is already submitted")
    ids: dict[str, str] = {}  # study job name -> SLURM job id (or, dry, the shell variable holding it)
    submitted: dict[int, str] = {}
    if dry_run:
        click.echo("#!/bin/bash\n# the submission of study " + shlex.quote(study_name) + "\nset -e")
    for job in jobs:
        state, detail = job_state(job, jobs_in_queue)
        if state == "done":
            continue
        if state in ("queued", "running"):
            ids[job.name] = recorded_id(job)
            click.echo(f"[{job.index}] {job.name}: already {state}, {detail}")
            continue
        after = [ids[n] for n in job.needs if n in ids]
        args = [
            f"--job-name={study_name}:{job.name}",
            f"--output={(job.out / LOG_PATTERN.format('%j')).resolve()}",
            f"--chdir={os.getcwd()}",
            "--open-mode=append",
            "--requeue",
            "--kill-on-invalid-dep=yes",
            *options.args(),
        ]
        script = job_script(job, [*run, "--run", str(job.index), "--launcher", shlex.join(launcher)])
        dependency = [f"--dependency=afterok:{':'.join(after)}"] if after else []
        if dry_run:
            var = f"j{job.index}"
            click.echo(f"\n# [{job.index}] {job.name}")
            click.echo(f"mkdir -p {shlex.quote(str(job.out))}")
            sbatch = " ".join(["sbatch --parsable", shlex.join(args), *dependency])  # keeps ${jN} unquoted
            click.echo(f"{var}=$({sbatch} <<'EOF'\n{script}EOF\n)")
            click.echo(f"echo ${var} > {shlex.quote(str(job.out / JOB_ID_FILE))}")
            ids[job.name] = "${" + var + "}"
            continue
        job.out.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["sbatch", "--parsable", *args, *dependency], input=script, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise click.ClickException(
                f"sbatch refused job {job.index} ({job.name}): {result.stderr.strip()}; "
                f"{len(submitted)} jobs were submitted before it, submitting again resubmits only the rest"
            )
        slurm_id = result.stdout.strip().split(";")[0]
        (job.out / JOB_ID_FILE).write_text(slurm_id + "\n")
        ids[job.name] = submitted[job.index] = slurm_id
        needs = f" after {', '.join(after)}" if after else ""
        click.echo(
            f"[{job.index}] {job.name}: SLURM job {slurm_id}{needs}, log {job.out / LOG_PATTERN.format(slurm_id)}"
        )
    if not dry_run:
        click.echo(f"submitted {len(submitted)} jobs" + ("" if submitted else ": nothing left to run"))
    return submitted


def slurm_command(
    jobs: Sequence[Job],
    study_name: str,
    run: list[str],
    launcher: list[str],
    prepare: Callable[[], None],
    submit: str | None,
    dry_run: bool,
    show_status: bool,
    **sbatch,
) -> bool:
    """Carry out ``--status`` or ``--submit slurm`` (``prepare`` materialises the study's data first); False when
    neither was asked for."""
    options = SbatchOptions(**sbatch)
    if show_status:
        print_status(jobs)
        return True
    if not submit:
        if dry_run or options != SbatchOptions():
            raise click.UsageError("--dry-run and the SLURM resource options go with --submit slurm")
        return False
    if not dry_run:
        prepare()
    source = click.get_current_context().get_parameter_source("launcher")
    launcher = job_launcher(launcher, options.gpus_per_job, explicit=source != click.core.ParameterSource.DEFAULT)
    submit_jobs(jobs, study_name, run, launcher, options, dry_run)
    return True
