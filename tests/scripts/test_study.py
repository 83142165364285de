"""The study runner (scripts/study.py): planning, skipping/resuming, dependency checks, tables and figures."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("study", ROOT / "scripts" / "study.py")
study = importlib.util.module_from_spec(spec)
sys.modules["study"] = study
spec.loader.exec_module(study)

THESIS = ROOT / "scripts" / "studies" / "thesis.toml"
MINI = ROOT / "scripts" / "studies" / "mini.toml"


def test_study_plan_warm_starts_each_binary_run_from_its_own_width(tmp_path):
    s = study.load_study(THESIS, out=tmp_path)
    jobs = study.plan(s)
    by_name = {j.name: j for j in jobs}
    assert jobs[0].name == "teacher" and all(j.needs for j in jobs[1:])
    # 5 architectures x 3 seeds phase-1 jobs, 6 rows x 3 seeds phase-2 jobs, 1 teacher
    assert sum(j.phase == 1 for j in jobs) == 1 + 5 * 3 and sum(j.phase == 2 for j in jobs) == 6 * 3
    w3 = by_name["p2/binary-w3_s1"]
    assert w3.needs == ("p1/bhvit_tiny_w3_s1",)
    init = w3.args[w3.args.index("--init-from") + 1]
    assert init == str(by_name["p1/bhvit_tiny_w3_s1"].out / "phase1" / "best.safetensors")
    fp = by_name["p2/fp32-w1_s0"]
    assert fp.args[fp.args.index("--precision") + 1] == "fp" and fp.needs == ("p1/bhvit_tiny_w1_s0",)
    fpds = by_name["p2/binary-w3-fpds_s0"]
    assert "--fp-downsample" in fpds.args and fpds.needs == ("p1/bhvit_tiny_w3_fpds_s0",)
    assert "--fp-downsample" in by_name["p1/bhvit_tiny_w3_fpds_s0"].args


def test_study_overrides_shrink_and_move_the_study(tmp_path):
    s = study.load_study(MINI, epochs=1, seeds=(3,), only=("binary-w1",), out=tmp_path)
    jobs = study.plan(s)
    assert [j.name for j in jobs] == ["p1/test_bhvit_w1_s3", "p2/binary-w1_s3"]
    assert jobs[0].args[jobs[0].args.index("--epochs") + 1] == "1"
    assert jobs[0].args[jobs[0].args.index("--data-dir") + 1] == str(tmp_path / "data")
    assert "--no-distill" in jobs[0].args
    with pytest.raises(Exception, match="unknown rows"):
        study.load_study(MINI, only=("nope",))


def _finish(job, top1=50.0):
    d = job.out / f"phase{job.phase}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps({"test_top1": top1}))


def test_study_jobs_are_skipped_when_done_and_resumed_when_partial(tmp_path):
    jobs = study.plan(study.load_study(MINI, out=tmp_path, only=("binary-w1",)))
    p1, p2 = jobs
    assert p1.status() == "todo" and "--resume" not in p1.command(["x"])
    (p1.out / "phase1").mkdir(parents=True)
    (p1.out / "phase1" / "last.safetensors").write_bytes(b"")
    assert p1.status() == "partial" and p1.command(["x"])[-1] == "--resume"
    with pytest.raises(Exception, match="needs p1/test_bhvit_w1_s0"):
        study.run_job(p2, jobs, ["false"])
    _finish(p1)
    study.run_job(p1, jobs, ["false"])  # done: skipped, so the failing launcher is never called
    with pytest.raises(Exception, match="failed; re-run"):
        study.run_job(p2, jobs, ["false"])


def test_study_list_prints_one_command_per_job(tmp_path):
    result = CliRunner().invoke(study.main, [str(THESIS), "--list", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 34 and lines[0].split("\t")[:3] == ["0", "todo", "-"]
    assert "-m bhvit.train" in lines[5] and "--phase 2" not in lines[5]
    result = CliRunner().invoke(study.main, [str(THESIS), "--run", "99", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "jobs 0..33" in result.output


def test_study_collect_writes_tables_with_mean_std_and_figures(tmp_path):
    s = study.load_study(THESIS, out=tmp_path)
    jobs = study.plan(s)
    for j in jobs:
        if j.name.startswith("p2/binary-w1_") or j.name.startswith("p2/fp32-w1_"):
            seed = int(j.name[-1])
            _finish(j, top1=(80.0 if "fp32" in j.name else 60.0) + seed)
            if "binary" in j.name:  # deployed and scored (as bhvit-compile --eval-dir records it): 2 seeds of 3
                deployed = tmp_path / "deploy" / f"binary-w1_s{seed}"
                deployed.mkdir(parents=True)
                record = {"evaluation": {"artifact_top1": 59.0 + 2 * seed}} if seed < 2 else {"evaluation": None}
                (deployed / "metadata.json").write_text(json.dumps(record))
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "binary-w1.json").write_text(json.dumps({"latency_ms": {"p50": 12.5}, "peak_rss_mb": 90}))
    args = [str(THESIS), "--collect", "--out", str(tmp_path), "--plot-accuracy", "deployed"]
    result = CliRunner().invoke(study.main, args)
    assert result.exit_code == 0, result.output
    table3 = (tmp_path / "table3.md").read_text()
    assert "| binary-w1 | binary | 3 | 61.00 ± 1.00 | 60.00 ± 1.41 | 1.55 | 49.3 |" in table3
    assert "| fp32-w1 | fp | 3 | 81.00 ± 1.00 | n/a | 48.26 | 2548.8 |" in table3
    assert "| binary-w3 | binary | 0 | n/a | n/a | 13.68 | 382.3 |" in table3
    csv_text = (tmp_path / "table3.csv").read_text()
    assert "12.5" in table3 and "latency_ms" in csv_text and "deployed_top1_mean" in csv_text
    assert "binary-i3" in (tmp_path / "table4.md").read_text()
    for name in ("accuracy_vs_memory.png", "accuracy_vs_ops.png", "accuracy_vs_latency.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_digits_folder_holds_real_upscaled_images(tmp_path):
    from PIL import Image

    study.write_digits_folder(tmp_path, size=32, test_fraction=0.25)
    train = sorted((tmp_path / "train").glob("*/*.png"))
    test = sorted((tmp_path / "test").glob("*/*.png"))
    assert len(train) + len(test) == 1797 and len(test) == 449
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [f"digit_{d}" for d in range(10)]
    img = Image.open(train[0])
    assert img.size == (32, 32) and img.mode == "RGB"
    assert 0 < int(np.asarray(img.convert("L"), dtype=np.int64).sum()) < 255 * 32 * 32


@pytest.fixture(scope="module")
def mini_study(tmp_path_factory):
    """The CI form of the mini study: one row, one epoch per phase, real bundled digits, then deployed."""
    pytest.importorskip("tvm.relax", reason="deploying the study's rows needs the TVM compiler")
    out = tmp_path_factory.mktemp("mini")
    args = [str(MINI), "--epochs", "1", "--only", "binary-w1", "--out", str(out)]
    result = CliRunner().invoke(study.main, args)
    assert result.exit_code == 0, result.output
    return out, args


def test_mini_study_reduced_runs_both_phases_deploys_and_tabulates(mini_study):
    out, args = mini_study
    p2 = json.loads((out / "p2" / "binary-w1_s0" / "phase2" / "result.json").read_text())
    assert 0 <= p2["test_top1"] <= 100 and p2["test_images"] == 449
    report = json.loads((out / "p2" / "binary-w1_s0" / "phase2" / "init_report.json").read_text())
    assert report["loaded"]  # phase 2 really started from phase 1's weights
    meta = json.loads((out / "deploy" / "binary-w1_s0" / "metadata.json").read_text())
    record = meta["evaluation"]
    assert meta["verification"]["passed"] and record["images"] == 449 and record["runs_on"] == "artifact"
    # the deployed model reproduces the checkpoint's test top-1 within one test image per 200
    assert abs(record["artifact_top1"] - p2["test_top1"]) <= 100 / 200
    assert abs(record["pytorch_top1"] - p2["test_top1"]) <= 100 / 200
    table = (out / "table3.md").read_text()
    assert "deployed top-1 (%)" in table
    assert f"| binary-w1 | binary | 1 | {p2['test_top1']:.2f} ± 0.00 | {record['artifact_top1']:.2f} ± 0.00 |" in table
    assert "deployed_top1_mean" in (out / "table3.csv").read_text()
    # re-running is safe: everything is skipped, nothing is compiled again
    again = CliRunner().invoke(study.main, args)
    assert again.exit_code == 0 and again.output.count("done, skipped") == 2 and "[deploy]" not in again.output


def test_mini_study_artifact_scores_the_same_with_bhvit_device_eval(mini_study):
    from bhvit.device.cli import main as device

    out, _ = mini_study
    artifact = out / "deploy" / "binary-w1_s0"
    result = CliRunner().invoke(
        device, ["eval", "--artifact", str(artifact), "--dir", str(out / "data" / "test"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    record = json.loads((artifact / "metadata.json").read_text())["evaluation"]
    assert report["images"] == record["images"] == 449 and report["top1"] == record["artifact_top1"]


PI_ROOT = Path(os.environ.get("BHVIT_PI_ROOT", "/var/tmp/pi-root"))


@pytest.mark.qemu
@pytest.mark.skipif(
    not (PI_ROOT / "usr/bin/python3.11").exists() or not shutil.which("qemu-aarch64-static"),
    reason=f"needs qemu-aarch64-static and an arm64 root at {PI_ROOT} (BHVIT_PI_ROOT; scripts/qemu_setup.sh)",
)
@pytest.mark.skipif(not shutil.which("aarch64-linux-gnu-gcc"), reason="needs aarch64-linux-gnu-gcc")
def test_mini_study_row_scores_the_same_on_an_emulated_cortex_a76(mini_study):
    """Done when: the trained binary row, compiled for the Pi with --eval-dir, gives the compile record's top-1
    from ``bhvit-device eval`` on an emulated Cortex-A76, which equals the host artifact's."""
    from bhvit.compile.cli import main as compile_main

    out, _ = mini_study
    checkpoint = out / "p2" / "binary-w1_s0" / "phase2" / "best.safetensors"
    test_split, rpi5 = out / "data" / "test", out / "deploy-rpi5"
    args = [str(checkpoint), "--target", "rpi5", "-o", str(rpi5), "--eval-dir", str(test_split)]
    result = CliRunner().invoke(compile_main, args)
    assert result.exit_code == 0, result.output
    record = json.loads((rpi5 / "metadata.json").read_text())["evaluation"]
    host = json.loads((out / "deploy" / "binary-w1_s0" / "metadata.json").read_text())["evaluation"]
    assert record["artifact_top1"] == host["artifact_top1"] and "host" in record["runs_on"]
    script = ROOT / "scripts" / "qemu_verify.py"
    run = subprocess.run(
        [sys.executable, str(script), str(rpi5), "--eval-dir", str(test_split), "--root", str(PI_ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout.splitlines()[-1])["qemu_eval"]
    assert report["images"] == 449 and report["top1"] == record["artifact_top1"]


def test_search_front_becomes_study_rows_that_plan(tmp_path):
    from bhvit.models.cli import main as cost_main

    rows = tmp_path / "rows.toml"
    result = CliRunner().invoke(
        cost_main, ["--search", "--budget", "10:300", "--width", "1", "--width", "2", "--study-rows", str(rows)]
    )
    assert result.exit_code == 0, result.output
    spec = tmp_path / "search.toml"
    spec.write_text('[study]\nname = "search"\n[train]\nepochs = 3\n\n' + rows.read_text())
    s = study.load_study(spec, out=tmp_path / "out")
    assert s.rows and all(r.tables == ("search",) for r in s.rows)
    jobs = study.plan(s)
    p2 = [j for j in jobs if j.phase == 2]
    assert len(p2) == len(s.rows)
    first = p2[0].args
    assert first[first.index("--hidden-width") + 1] in ("1.0", "2.0")
    assert "--precision" in first and "--init-from" in first
