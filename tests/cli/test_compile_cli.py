"""``bhvit-compile`` options and errors through Click's CliRunner: one line, non-zero exit, no artifact."""

from __future__ import annotations

import json
import shutil

import click
import pytest
from bhvit.compile.cli import main
from click.testing import CliRunner


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_refused(result, needle: str, code: int = 1):
    assert result.exit_code == code, result.output
    assert needle in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1


def test_help_documents_every_option():
    result = _run("--help")
    assert result.exit_code == 0
    undocumented = [p.name for p in main.params if isinstance(p, click.Option) and not p.help]
    assert undocumented == []
    assert "default: tvm" in result.output


def test_default_artifact_names_differ_for_different_models():
    from bhvit.compile.source import random_init

    names = {
        random_init(m, **kw).name
        for m, kw in [
            ("bhvit_tiny_w3", {}),
            ("bhvit_tiny_w3", {"width": 2.0}),
            ("test_bhvit", {}),
            ("test_bhvit", {"img_size": 32}),
            ("test_bhvit", {"num_classes": 3}),
            ("test_bhvit", {"precision": "fp32"}),
        ]
    }
    assert len(names) == 6 and "bhvit_tiny_w3.w1a1" in names


def test_unknown_target_is_a_usage_error(tmp_path):
    _assert_refused(_run("--random-init", "--target", "rpi9", "-o", tmp_path / "a"), "rpi9", code=2)
    assert not (tmp_path / "a").exists()


def test_needs_checkpoint_or_random_init():
    _assert_refused(_run("--target", "host"), "CHECKPOINT or --random-init", code=2)


def test_random_init_options_with_a_checkpoint_are_a_usage_error(tmp_path):
    result = _run(
        tmp_path / "m.safetensors",
        "--target",
        "host",
        "--width",
        "2",
        "--fp-downsample",
        "--precision",
        "binary",
        "-o",
        tmp_path / "a",
    )
    _assert_refused(result, "--precision, --width, --fp-downsample only apply to --random-init", code=2)
    assert "--model" not in result.output and "--seed" not in result.output  # defaults the user did not set
    assert not (tmp_path / "a").exists()


def test_missing_checkpoint_file(tmp_path):
    _assert_refused(_run(tmp_path / "nope.safetensors", "--target", "host", "-o", tmp_path / "a"), "does not exist")
    assert not (tmp_path / "a").exists()


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    _assert_refused(_run(bad, "--target", "host", "-o", tmp_path / "a"), "not a readable safetensors file")
    assert not (tmp_path / "a").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors"]


def test_non_bhvit_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    foreign = tmp_path / "resnet.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(foreign))
    _assert_refused(_run(foreign, "--target", "host", "-o", tmp_path / "a"), "without bhvit metadata")


def test_bad_model_option(tmp_path):
    _assert_refused(
        _run("--random-init", "--model", "test_bhvit", "--img-size", "50", "--target", "host", "-o", tmp_path / "a"),
        "img_size 50",
    )
    assert not (tmp_path / "a").exists()


def test_missing_cross_compiler(tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if "aarch64" in name else real_which(name))
    result = _run("--random-init", "--model", "test_bhvit", "--target", "rpi5", "-o", tmp_path / "a")
    _assert_refused(result, "aarch64-linux-gnu-gcc not found")
    assert "apt-get install gcc-aarch64-linux-gnu" in result.output
    assert not (tmp_path / "a").exists()


def test_output_holding_another_artifact_is_refused_unless_overwrite(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "art"
    first = _run("--random-init", "--model", "test_bhvit", "--target", "host", "--format", "onnx", "-o", out)
    assert first.exit_code == 0, first.output
    assert "verification passed" in first.output and f"Saved to {out}" in first.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["runtime"] == "onnxruntime" and meta["verification"]["passed"]
    other = (
        "--random-init",
        "--model",
        "test_bhvit",
        "--precision",
        "fp32",
        "--target",
        "host",
        "--format",
        "onnx",
        "-o",
        out,
    )
    _assert_refused(_run(*other), "holds a different artifact")
    assert json.loads((out / "metadata.json").read_text()) == meta  # untouched
    replaced = _run(*other, "--overwrite", "--no-verify")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "metadata.json").read_text())["model"]["name"] == "test_bhvit.fp32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temp dirs left


def test_output_that_is_not_an_artifact_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    _assert_refused(
        _run("--random-init", "--model", "test_bhvit", "--target", "host", "-o", tmp_path), "holds no bhvit artifact"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_default_output_and_latest_link(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    result = _run("--random-init", "--model", "test_bhvit", "--target", "host", "--format", "onnx", "--no-verify")
    assert result.exit_code == 0, result.output
    out = tmp_path / "artifacts" / "test_bhvit.w1a1.host.onnx"
    assert (out / "model.onnx").is_file()
    latest = tmp_path / "artifacts" / "latest"
    assert latest.is_symlink() and latest.resolve() == out.resolve()


def test_tune_trials_need_a_database_dir(tmp_path):
    _assert_refused(_run("--random-init", "--target", "host", "--tune-trials", "3"), "needs --tune-db", code=2)
    _assert_refused(
        _run("--random-init", "--target", "host", "--tune-db", tmp_path / "none"), "not a directory", code=2
    )


def test_tune_trials_for_a_cross_target_are_a_usage_error(tmp_path):
    for target in ("rpi5", "rpi4"):
        result = _run("--random-init", "--target", target, "--tune-db", tmp_path, "--tune-trials", "3")
        _assert_refused(result, "tune on the target itself", code=2)


def test_tvm_format_needs_a_target():
    _assert_refused(_run("--random-init", "--model", "test_bhvit"), "--format tvm needs --target", code=2)


def test_onnx_format_needs_no_target(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "art"
    result = _run("--random-init", "--model", "test_bhvit", "--format", "onnx", "-o", out)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["runtime"] == "onnxruntime" and meta["verification"]["passed"]
    from bhvit.device.host import cpu_features, host_arch

    baseline = {"x86_64": "x86-64", "aarch64": "rpi4"}[host_arch()]
    assert meta["target"]["arch"] == host_arch() and meta["target"]["name"] == baseline
    assert set(meta["target"]["cpu_features"]) <= cpu_features()  # the baseline runs on this machine


def test_random_init_model_options_default_to_the_named_model(tmp_path):
    """No --img-size/--num-classes: test_bhvit keeps its own 64 px and 10 classes (not bhvit_tiny's)."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "art"
    result = _run("--random-init", "--model", "test_bhvit", "--format", "onnx", "--no-verify", "-o", out)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["model"]["config"]["img_size"] == 64 and len(meta["class_names"]) == 10
    assert meta["model"]["name"] == "test_bhvit.w1a1"


def test_version():
    from importlib.metadata import version

    result = _run("--version")
    assert result.exit_code == 0 and version("bhvit") in result.output
