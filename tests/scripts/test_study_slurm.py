"""The study on SLURM (scripts/study_slurm.py through scripts/study.py): the submission script, job states, and the
CI-sized mini study run to the end by a real one-node SLURM, compared with the same study run locally."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import study
import study_slurm
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "scripts" / "studies" / "mini.toml"
CI_MINI = [str(MINI), "--epochs", "1", "--only", "binary-w1"]  # one row, one epoch per phase
WAIT_S = 1800  # the mini study under SLURM takes a few minutes on 2 busy cores


def _invoke(*args, out: Path):
    return CliRunner().invoke(study.main, [*CI_MINI, "--out", str(out), *args])


def _finish(job, top1=50.0):
    d = job.out / f"phase{job.phase}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps({"test_top1": top1}))


def test_dry_run_prints_the_chained_submission_and_submits_nothing(tmp_path):
    out = tmp_path / "study"
    args = ["--submit", "slurm", "--dry-run", "--gpus-per-job", "2", "--time", "2:00:00", "--partition", "gpu"]
    result = _invoke(*args, "--sbatch-arg", "--qos=high --cpus-per-task=8", "--account", "lab", out=out)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert not out.exists()  # nothing written, nothing submitted
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0  # a valid shell script
    sbatch = [line for line in text.splitlines() if "sbatch --parsable" in line]
    assert len(sbatch) == 2
    p1, p2 = sbatch
    for line in sbatch:
        for arg in ("--partition=gpu", "--time=2:00:00", "--gres=gpu:2", "--account=lab", "--qos=high"):
            assert arg in line
        assert "--cpus-per-task=8" in line and "--requeue" in line and "--kill-on-invalid-dep=yes" in line
    assert "--dependency" not in p1 and p2.endswith("--dependency=afterok:${j0} <<'EOF'")
    assert f"--output={out}/p1/test_bhvit_w1_s0/slurm-%j.log" in p1  # logs beside the run folder
    assert f"--output={out}/p2/binary-w1_s0/slurm-%j.log" in p2
    runs = re.findall(r"^srun --ntasks=1 (.*)$", text, flags=re.M)
    assert len(runs) == 2 and "--run 0 --launcher" in runs[0]
    assert "--run 1 --launcher" in runs[1] and f"--epochs 1 --only binary-w1 --out {out}" in runs[1]
    assert "-m torch.distributed.run --standalone --nproc_per_node=2 -m bhvit.train" in runs[0]

    # phase 1 done, phase 2 interrupted: only phase 2 is submitted, with nothing to wait for
    jobs = study.plan(study.load_study(MINI, epochs=1, only=("binary-w1",), out=out))
    _finish(jobs[0])
    (jobs[1].out / "phase2").mkdir(parents=True)
    (jobs[1].out / "phase2" / "last.safetensors").write_bytes(b"")
    again = _invoke("--submit", "slurm", "--dry-run", out=out)
    assert again.exit_code == 0, again.output
    sbatch = [line for line in again.stdout.splitlines() if "sbatch --parsable" in line]
    assert len(sbatch) == 1 and "binary-w1_s0" in sbatch[0] and "--dependency" not in sbatch[0]
    assert "--gres" not in sbatch[0] and "--run 1 --launcher" in again.stdout
    assert "torch.distributed.run" not in again.stdout  # one process per job without GPUs


def test_slurm_options_are_checked(tmp_path):
    for args, message in (
        (["--submit", "slurm", "--dry-run", "--time", "soon"], "HH:MM:SS"),
        (["--dry-run"], "go with --submit slurm"),
        (["--partition", "gpu"], "go with --submit slurm"),
        (["--submit", "pbs"], "'slurm'"),
        (["--submit", "slurm", "--gpus-per-job", "-1"], "-1"),
    ):
        result = _invoke(*args, out=tmp_path)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_job_states_come_from_run_folders_the_queue_and_logs(tmp_path):
    jobs = study.plan(study.load_study(ROOT / "scripts" / "studies" / "thesis.toml", out=tmp_path))[:7]
    done, queued, running, failed, cancelled, partial, todo = jobs
    _finish(done)
    for job, slurm_id in ((queued, "11"), (running, "12"), (failed, "13"), (cancelled, "14"), (done, "10")):
        job.out.mkdir(parents=True, exist_ok=True)
        (job.out / study_slurm.JOB_ID_FILE).write_text(slurm_id + "\n")
    (running.out / "slurm-12.log").write_text("started\n")
    (failed.out / "slurm-13.log").write_text("start\nslurmstepd: error: *** JOB 13 CANCELLED DUE TO TIME LIMIT ***\n\n")
    (partial.out / "phase1").mkdir(parents=True)
    (partial.out / "phase1" / "last.safetensors").write_bytes(b"")
    in_queue = {"11": ("PENDING", "Dependency"), "12": ("RUNNING", "None"), "14": ("CANCELLED", "DependencyNever")}
    states = [study_slurm.job_state(j, in_queue) for j in jobs]
    assert [s for s, _ in states] == ["done", "queued", "running", "failed", "failed", "todo", "todo"]
    assert states[1][1] == "SLURM job 11 (Dependency)" and str(running.out / "slurm-12.log") in states[2][1]
    assert "TIME LIMIT" in states[3][1]  # not in the queue any more: the log says why
    assert "never started (CANCELLED DependencyNever)" in states[4][1]
    assert "resumes from its last epoch" in states[5][1] and states[6][1] == "not submitted"
    assert study_slurm.job_state(queued, None)[0] == "todo"  # no SLURM to ask: not claimed to be queued


def _wait_until_settled(jobs, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        in_queue = study_slurm.queue()
        if all(study_slurm.job_state(j, in_queue)[0] not in ("queued", "running") for j in jobs):
            return
        time.sleep(2)
    pytest.fail(f"the SLURM jobs did not finish within {timeout_s} s: {study_slurm.queue()}")


def _stamp(log: Path, event: str) -> float:
    found = re.findall(rf"^bhvit-study: .* {event} at .*\(unix ([0-9.]+)\)", log.read_text(), flags=re.M)
    assert found, log.read_text()
    return float(found[-1])


@pytest.mark.slurm
def test_mini_study_through_slurm_equals_the_local_run(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    out = tmp_path / "slurm"
    jobs = study.plan(study.load_study(MINI, epochs=1, only=("binary-w1",), out=out))

    # a job that fails: phase 2, which needs it, never starts; --status tells both from the queue and the logs
    result = _invoke("--submit", "slurm", "--launcher", "false", out=out)
    assert result.exit_code == 0 and result.output.count("SLURM job") == 2, result.output
    _wait_until_settled(jobs, 120)
    status = _invoke("--status", out=out)
    lines = status.output.splitlines()
    assert lines[0].startswith("0\tfailed\tp1/") and "finished at" in lines[0] and "exit code 1" in lines[0]
    assert lines[1].startswith("1\tfailed\tp2/") and "never started" in lines[1], status.output

    # submitting again resubmits both; the scheduler runs phase 2 after phase 1
    result = _invoke("--submit", "slurm", out=out)
    assert result.exit_code == 0 and "submitted 2 jobs" in result.output, result.output
    p1_id, p2_id = ((j.out / study_slurm.JOB_ID_FILE).read_text().strip() for j in jobs)
    assert f"after {p1_id}" in result.output
    _wait_until_settled(jobs, WAIT_S)
    p1_log, p2_log = (j.out / f"slurm-{i}.log" for j, i in zip(jobs, (p1_id, p2_id), strict=True))
    assert [j.status() for j in jobs] == ["done", "done"], p1_log.read_text()[-2000:] + p2_log.read_text()[-2000:]
    assert _stamp(p1_log, "finished") <= _stamp(p2_log, "started")
    assert (jobs[0].out / "phase1" / "result.json").stat().st_mtime <= _stamp(p2_log, "started")
    status = _invoke("--status", out=out)
    assert status.output.splitlines()[-1] == "2 done", status.output
    assert "nothing left to run" in _invoke("--submit", "slurm", out=out).output
    collect = _invoke("--collect", out=out)
    assert collect.exit_code == 0, collect.output

    local = _invoke("--no-deploy", out=tmp_path / "local")  # --collect does not compile: compare like with like
    assert local.exit_code == 0, local.output
    for table in ("table3.csv", "table3.md"):
        assert (out / table).read_text() == (tmp_path / "local" / table).read_text()
