"""The study runner (scripts/study.py): planning, skipping/resuming, dependency checks, tables and figures."""

import importlib.util
import json
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
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "binary-w1.json").write_text(json.dumps({"latency_ms": {"p50": 12.5}, "peak_rss_mb": 90}))
    result = CliRunner().invoke(study.main, [str(THESIS), "--collect", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table3 = (tmp_path / "table3.md").read_text()
    assert "| binary-w1 | binary | 3 | 61.00 ± 1.00 | 1.55 | 49.3 |" in table3
    assert "| fp32-w1 | fp | 3 | 81.00 ± 1.00 | 48.26 | 2548.8 |" in table3
    assert "| binary-w3 | binary | 0 | n/a | 13.68 | 382.3 |" in table3
    assert "12.5" in table3 and "latency_ms" in (tmp_path / "table3.csv").read_text()
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


def test_mini_study_reduced_runs_both_phases_and_tabulates(tmp_path):
    """The CI form of the mini study: one row, one epoch per phase, real bundled digits."""
    result = CliRunner().invoke(study.main, [str(MINI), "--epochs", "1", "--only", "binary-w1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    p2 = json.loads((tmp_path / "p2" / "binary-w1_s0" / "phase2" / "result.json").read_text())
    assert 0 <= p2["test_top1"] <= 100 and p2["test_images"] == 449
    report = json.loads((tmp_path / "p2" / "binary-w1_s0" / "phase2" / "init_report.json").read_text())
    assert report["loaded"]  # phase 2 really started from phase 1's weights
    assert "| binary-w1 | binary | 1 |" in (tmp_path / "table3.md").read_text()
    # re-running is safe: everything is skipped
    again = CliRunner().invoke(study.main, [str(MINI), "--epochs", "1", "--only", "binary-w1", "--out", str(tmp_path)])
    assert again.exit_code == 0 and again.output.count("done, skipped") == 2


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
