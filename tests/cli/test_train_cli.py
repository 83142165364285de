"""bhvit-train options and error messages (CliRunner), plus the console-script and ``python -m`` entry points."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from bhvit.train.cli import main
from bhvit.train.config import TrainCfg
from bhvit.train.data import write_synthetic_folder
from click.testing import CliRunner


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return write_synthetic_folder(tmp_path_factory.mktemp("d"), classes=2, per_class=10, test_per_class=2, size=32)


def _fail(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    return result.output


def test_train_cli_help_shows_every_option_with_defaults():
    text = CliRunner().invoke(main, ["--help"], terminal_width=200).output
    options = {p.name: p for p in main.params}
    assert {f.name for f in dataclasses.fields(TrainCfg)} <= set(options)
    assert [name for name, p in options.items() if not p.help] == []
    assert "[default: 1000;" in text and "[default: 0.0005]" in text and "deit_tiny_patch16_224" in text


def test_train_cli_missing_data_dir_is_a_clear_error(tmp_path):
    out = _fail(["--dataset", "folder", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert "does not exist" in out and "train/<class>" in out


def test_train_cli_resume_needs_out():
    assert "--resume needs --out" in _fail(["--resume"])


def _folder_run(data, out, *extra: str) -> list[str]:
    """bhvit-train arguments for test_bhvit on an image folder, plus ``extra``."""
    return ["--model", "test_bhvit", "--dataset", "folder", "--data-dir", str(data), *extra, "--out", str(out)]


def test_train_cli_distillation_without_teacher_says_how_to_train_one(small_data, tmp_path):
    out = _fail(_folder_run(small_data, tmp_path / "r"))
    assert "--teacher-checkpoint" in out and "bhvit-train --model deit_tiny_patch16_224" in out


def test_train_cli_corrupt_init_from_is_a_clear_error(small_data, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    cpu = ("--no-distill", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--init-from", str(bad))
    out = _fail(_folder_run(small_data, tmp_path / "r", *cpu))
    assert "not a readable safetensors file" in out


def test_train_cli_unknown_precision_suggests_a_preset(small_data, tmp_path):
    out = _fail(_folder_run(small_data, tmp_path / "r", "--no-distill", "--precision", "binary_fpd", "--phase", "1"))
    assert "did you mean 'binary_fpds'" in out


@pytest.mark.parametrize("cmd", [["bhvit-train"], [sys.executable, "-m", "bhvit.train"]])
def test_train_cli_entry_points_print_help(cmd):
    done = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Usage: bhvit-train" in done.stdout
