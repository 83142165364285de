"""End to end on CPU: both phases, warm start, checkpoints, refusal of bad inputs, kill -9 + resume, DDP, teacher."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from bhvit.models.checkpoint import load_checkpoint, load_state_dict
from bhvit.train.cli import main
from bhvit.train.config import TrainCfg
from bhvit.train.data import build_loader, load_splits
from bhvit.train.dist import DistEnv
from bhvit.train.loop import evaluate
from click.testing import CliRunner

CPU = DistEnv(0, 1, torch.device("cpu"))


def _invoke(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, train_args):
    out = tmp_path_factory.mktemp("run") / "both"
    result = _invoke(train_args(out))
    assert result.exit_code == 0, result.output
    return out


def test_train_two_phases_write_run_directory(run):
    for phase in ("phase1", "phase2"):
        d = run / phase
        assert {p.name for p in d.iterdir()} >= {
            "best.safetensors",
            "last.safetensors",
            "metrics.jsonl",
            "result.json",
            "config.json",
        }
        (row,) = _metrics(d / "metrics.jsonl")
        assert row["epoch"] == 0 and row["train_images"] == 32 and row["val_top1"] is not None
        result = json.loads((d / "result.json").read_text())
        assert 0 <= result["test_top1"] <= 100 and result["test_skipped_images"] == 1
        assert result["cost"]["mops"] > 0
    meta = json.loads((run / "phase2" / "config.json").read_text())
    assert meta["config"]["precision"]["default"] == "binary"
    assert meta["class_names"] == ["class_00", "class_01", "class_02"]
    assert meta["preprocess"] == {
        "input_size": [3, 64, 64],
        "resize": 73,
        "crop": 64,
        "interpolation": "bicubic",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    init = json.loads((run / "phase2" / "init_report.json").read_text())
    assert init["checkpoint"].endswith("phase1/best.safetensors") and not init["mismatched"]


def test_train_best_checkpoint_reproduces_test_accuracy(run, tiny_data):
    model, meta = load_checkpoint(run / "phase2" / "best.safetensors")
    cfg = TrainCfg(dataset="folder", data_dir=tiny_data, img_size=64, batch_size=8, workers=0)
    test = evaluate(model, build_loader(load_splits(cfg).test, cfg, False), CPU)
    assert test["top1"] == json.loads((run / "phase2" / "result.json").read_text())["test_top1"]
    assert meta["phase"] == 2 and model.cfg.is_binary


def test_train_phase2_starts_from_phase1_weights(run, train_args, tmp_path):
    out = tmp_path / "p2"
    init = run / "phase1" / "best.safetensors"
    result = _invoke(train_args(out, "--phase", "2", "--init-from", str(init), "--lr", "0"))
    assert result.exit_code == 0, result.output
    fp, binary = load_state_dict(init), load_state_dict(out / "phase2" / "last.safetensors")
    model, _ = load_checkpoint(out / "phase2" / "last.safetensors")
    params = [n for n, _ in model.named_parameters() if "quantizer" not in n]
    assert len(params) > 100
    for name in params:  # lr 0: the binary phase still holds exactly the FP weights it started from
        assert torch.equal(fp[name], binary[name]), name
    assert model.cfg.is_binary


def test_train_refuses_finished_run_without_resume(run, train_args):
    result = CliRunner().invoke(main, train_args(run))
    assert result.exit_code == 1
    assert "already holds a finished run" in result.output and "Traceback" not in result.output


def test_train_resume_of_finished_run_changes_nothing(run, train_args):
    before = (run / "phase2" / "best.safetensors").stat().st_mtime_ns
    result = _invoke(train_args(run, "--resume"))
    assert result.exit_code == 0, result.output
    assert (run / "phase2" / "best.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize("flag", ["--init-from", "--resume"])
def test_train_refuses_checkpoint_of_other_width(run, train_args, tmp_path, flag):
    if flag == "--resume":
        args = train_args(run, "--width", "2", "--resume")
    else:
        args = train_args(
            tmp_path / "w2", "--width", "2", "--phase", "1", flag, str(run / "phase1" / "best.safetensors")
        )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "width" in result.output and "Traceback" not in result.output


def test_train_kill9_during_epoch_then_resume_finishes_all_epochs(train_args, tmp_path):
    out = tmp_path / "killed"
    cmd = ["bhvit-train", *train_args(out, "--phase", "1", "--epochs", "3")]
    proc = subprocess.Popen(cmd, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = out / "phase1" / "last.safetensors"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # epoch 1 of 3 is in progress
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()
    model, meta = load_checkpoint(last)
    assert meta["epoch"] < 2 and not (out / "phase1" / "result.json").exists()
    done = subprocess.run(cmd + ["--resume"], env=_subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = _metrics(out / "phase1" / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    lrs = [5e-4 * 0.5 * (1 + math.cos(math.pi * e / 3)) for e in range(3)]
    assert [r["lr"] for r in rows] == pytest.approx(lrs, rel=1e-4)  # the scheduler resumed where it stopped
    assert json.loads((out / "phase1" / "result.json").read_text())["epochs"] == 3


def test_train_stopped_between_metrics_line_and_checkpoint_loses_no_epoch(train_args, tmp_path, monkeypatch):
    """The narrowest window of a kill: epoch 1's metrics line is written, its ``last`` checkpoint is not. Resume
    redoes epoch 1 and the file ends with exactly one line per epoch."""
    import bhvit.train.loop as loop

    out = tmp_path / "stopped"
    args = train_args(out, "--phase", "1", "--epochs", "3")
    real = loop.save_last

    def stop_at_epoch_1(path, model, meta, state):
        if meta["epoch"] == 1:
            raise KeyboardInterrupt  # what the CLI gets on Ctrl-C
        real(path, model, meta, state)

    monkeypatch.setattr(loop, "save_last", stop_at_epoch_1)
    assert CliRunner().invoke(main, args).exit_code != 0
    assert [r["epoch"] for r in _metrics(out / "phase1" / "metrics.jsonl")] == [0, 1]
    monkeypatch.setattr(loop, "save_last", real)
    assert _invoke([*args, "--resume"]).exit_code == 0
    assert [r["epoch"] for r in _metrics(out / "phase1" / "metrics.jsonl")] == [0, 1, 2]


def test_train_ddp_gloo_two_processes(train_args, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "bhvit.train",
        *train_args(out),
    ]
    done = subprocess.run(cmd, env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for phase in ("phase1", "phase2"):
        (row,) = _metrics(out / phase / "metrics.jsonl")
        assert row["train_images"] == 32  # 2 processes x 2 batches x 8 images, summed over ranks
        assert json.loads((out / phase / "result.json").read_text())["test_images"] == 13
    load_checkpoint(out / "phase2" / "best.safetensors")


def test_train_teacher_finetune_then_distill(train_args, tmp_path):
    teacher = tmp_path / "teacher"
    result = _invoke(train_args(teacher, "--model", "deit_tiny_patch16_224", "--img-size", "64"))
    assert result.exit_code == 0, result.output
    assert not (teacher / "phase2").exists()
    ckpt = teacher / "phase1" / "best.safetensors"
    _, meta = load_checkpoint(ckpt)
    assert meta["family"] == "timm" and meta["config"]["img_size"] == 64
    student = tmp_path / "student"
    result = _invoke(train_args(student, "--phase", "1", "--distill", "--teacher-checkpoint", str(ckpt)))
    assert result.exit_code == 0, result.output
    (row,) = _metrics(student / "phase1" / "metrics.jsonl")
    assert row["loss_distill"] > 0
