"""bhvit-device CLI: options, sources, refusals, exit codes, logs; one subprocess run stopped with SIGINT."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess

import bhvit_device_testlib as testlib  # registered by conftest.py
import click
import numpy as np
import pytest
from bhvit.device import cli
from click.testing import CliRunner

CHELSEA = str(testlib.SAMPLES / "chelsea.png")


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke bhvit-device in a fresh working directory; returns the Click result."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cli.ARTIFACT_ENV, raising=False)

    def invoke(*args: str):
        return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_help_documents_every_option_with_defaults(run):
    for name, command in cli.main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help"
        assert run(name, "--help").exit_code == 0
    text = run("classify", "--help").output
    assert "[default: 3; x>=1]" in text and "BHVIT_ARTIFACT" in text and "artifacts/latest" in text


def test_classify_images_prints_labels_timings_and_summary(run, artifacts, tmp_path):
    result = run("classify", "--artifact", artifacts.get(), "--image", CHELSEA, CHELSEA, "--top-k", "2")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("#")]
    assert len(lines) == 2 and "chelsea.png" in lines[0]
    assert all(key in lines[0] for key in ("pre ", "inf ", "total ", "FPS"))
    assert lines[0].split("|")[0].count(",") == 1  # two labels
    for key in ("frames     2", "p50", "p90", "p99", "peak RSS", "(VmHWM)", "log        runs/classify/001/frames.csv"):
        assert key in result.stdout
    rows = list(csv.DictReader((tmp_path / "runs/classify/001/frames.csv").open()))
    assert len(rows) == 2 and rows[0]["label"] in testlib.PETS


def test_classify_json_emits_frames_then_summary_and_jsonl_log(run, artifacts, tmp_path):
    result = run(
        "classify",
        "--artifact",
        artifacts.get(runtime="onnxruntime"),
        "--image",
        CHELSEA,
        "--json",
        "--log",
        "out/frames.jsonl",
    )
    assert result.exit_code == 0, result.output
    records = _json_lines(result.stdout)
    assert [r["type"] for r in records] == ["frame", "summary"]
    assert records[1]["frames"] == 1 and records[1]["log"] == "out/frames.jsonl"
    logged = _json_lines((tmp_path / "out/frames.jsonl").read_text())
    assert logged[0]["topk"] == records[0]["topk"]


def test_classify_refuses_an_existing_log_and_leaves_it_untouched(run, artifacts, tmp_path):
    (tmp_path / "earlier.csv").write_text("frame,label\n0,pug\n")
    result = run("classify", "--artifact", artifacts.get(size=32), "--image", CHELSEA, "--log", "earlier.csv")
    assert (
        result.exit_code == 2 and "earlier.csv exists: choose a new file (a log is never overwritten)" in result.stderr
    )
    assert (tmp_path / "earlier.csv").read_text() == "frame,label\n0,pug\n" and not (tmp_path / "runs").exists()
    assert "a file that exists is refused" in " ".join(run("classify", "--help").output.split())


def test_classify_without_source_uses_samples_with_warning(run, artifacts):
    result = run("classify", "--artifact", artifacts.get(size=32))
    assert result.exit_code == 0
    assert "bundled sample photos" in result.stderr
    assert {"chelsea.png", "coffee.png", "astronaut.png"} <= {
        line.split()[1] for line in result.stdout.splitlines() if line.startswith("#")
    }


def test_classify_dir_skips_corrupt_images_and_counts_them(run, artifacts, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(CHELSEA, photos / "cat.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = run("classify", "--artifact", artifacts.get(size=32), "--dir", photos)
    assert result.exit_code == 0
    assert "frames     1 (skipped 1)" in result.stdout and "broken.jpg: cannot decode image" in result.stderr


def test_classify_camera_with_stand_in_picamera2(run, artifacts, fake_camera):
    module = fake_camera([testlib.chelsea()])
    result = run(
        "classify", "--camera", "--preview", "--artifact", artifacts.get(size=32), "--max-frames", "3", "--json"
    )
    assert result.exit_code == 0, result.output
    records = _json_lines(result.stdout)
    assert [r["source"] for r in records[:-1]] == ["camera:0"] * 3
    assert module.instances[0].closed and module.instances[0].show_preview is True


def test_classify_camera_missing_is_usage_error_with_fix(run, artifacts, fake_camera):
    fake_camera([testlib.chelsea()], cameras=0)
    result = run("classify", "--camera", "--retries", "1", "--artifact", artifacts.get(size=32))
    assert result.exit_code == 2
    assert "rpicam-hello --list-cameras" in result.stderr


def test_classify_camera_that_stalls_exits_1_after_summary(run, artifacts, fake_camera, monkeypatch):
    fake_camera([testlib.chelsea()], fail_after=2)
    result = run("classify", "--camera", "--retries", "2", "--artifact", artifacts.get(size=32))
    assert result.exit_code == 1
    assert "frames     2" in result.stdout and "stopped    camera:0 stopped delivering frames" in result.stdout
    assert "Error: camera:0 stopped delivering frames" in result.stderr


def test_classify_video_every_n_frames(run, artifacts, tmp_path):
    video = testlib.write_video(tmp_path / "clip.avi", np.zeros((10, 48, 64, 3), np.uint8))
    result = run("classify", "--video", video, "--every", "4", "--artifact", artifacts.get(size=32), "--json")
    assert result.exit_code == 0
    assert _json_lines(result.stdout)[-1]["frames"] == 3


def test_classify_refuses_tampered_artifact_before_loading(run, artifacts, tmp_path):
    path = artifacts.copy(tmp_path / "tampered", size=32)
    (path / "model.so").write_bytes(b"evil")
    result = run("classify", "--artifact", path)
    assert result.exit_code == 1
    assert "refusing artifact" in result.stderr and "sha256 model.so" in result.stderr


def test_missing_default_artifact_explains_how_to_get_one(run):
    result = run("classify", "--image", CHELSEA)
    assert result.exit_code == 2
    assert "no artifact at artifacts/latest" in result.stderr and "bhvit-compile" in result.stderr


def test_artifact_location_comes_from_environment(run, artifacts, monkeypatch):
    monkeypatch.setenv(cli.ARTIFACT_ENV, str(artifacts.get(size=32)))
    assert run("classify", "--image", CHELSEA).exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--camera", "--video", CHELSEA], "choose one source, got --camera and --video"),
        (["--preview", "--image", CHELSEA], "--preview needs --camera"),
        (["--image", CHELSEA, "--log", "x.txt"], "need one of .csv, .jsonl, .ndjson"),
        (["--resolution", "big"], "is not WIDTHxHEIGHT"),
    ],
)
def test_classify_usage_errors_exit_2(run, artifacts, args, message):
    result = run("classify", "--artifact", artifacts.get(size=32), *args)
    assert result.exit_code == 2 and message in result.stderr


def test_bench_json_reports_latency_peak_ram_and_machine(run, artifacts):
    result = run(
        "bench",
        "--artifact",
        artifacts.get(both=True),
        "--runtime",
        "onnxruntime",
        "--warmup",
        "1",
        "--runs",
        "7",
        "--threads",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["runtime"], report["threads"], report["runs"]) == ("onnxruntime", 1, 7)
    assert report["latency_ms"]["count"] == 7 and report["latency_ms"]["p50"] <= report["latency_ms"]["p90"]
    assert report["peak_reset"] and report["peak_rss_mb"] >= report["rss_before_mb"] > 0
    assert {"cpu_model", "cores", "governor", "temperature_c", "throttled"} <= set(report["machine"])


def test_bench_text_output(run, artifacts):
    result = run("bench", "--artifact", artifacts.get(size=32), "--runs", "3")
    assert result.exit_code == 0
    assert "median" in result.stdout and "during inference" in result.stdout and "governor" in result.stdout


def test_info_verifies_and_exits_1_when_not_runnable(run, artifacts, tmp_path):
    good = run("info", "--artifact", artifacts.get())
    assert good.exit_code == 0 and "verdict    can run here" in good.stdout and "cost       params=0" in good.stdout
    path = artifacts.copy(tmp_path / "other-arch")
    data = json.loads((path / "metadata.json").read_text())
    data["target"]["arch"] = "riscv64"
    (path / "metadata.json").write_text(json.dumps(data))
    bad = run("info", "--artifact", path, "--json")
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert not report["runnable"] and any("need riscv64" in c["message"] for c in report["checks"] if not c["ok"])


def test_info_shows_source_checksum_and_refuses_another_tvm_release(run, artifacts, tmp_path, monkeypatch):
    path = artifacts.copy(tmp_path / "a")
    data = json.loads((path / "metadata.json").read_text())
    data["model"] |= {"source": "runs/train/001/best.safetensors", "source_sha256": "ab" * 32}
    (path / "metadata.json").write_text(json.dumps(data))
    good = run("info", "--artifact", path)
    assert good.exit_code == 0 and f"source     runs/train/001/best.safetensors (sha256 {'ab' * 32})" in good.stdout
    monkeypatch.setattr("bhvit.device.artifact._installed_version", lambda dist: "9.0.0")
    bad = run("info", "--artifact", path)
    assert bad.exit_code == 1 and "FAIL apache-tvm: found 9.0.0, need 0.27" in bad.stdout
    refused = run("classify", "--artifact", path, "--image", CHELSEA)
    assert refused.exit_code == 1 and "refusing artifact, apache-tvm: found 9.0.0" in refused.stderr


def test_installed_script_stops_cleanly_on_sigint_and_keeps_log(artifacts, tmp_path):
    video = testlib.write_video(tmp_path / "long.avi", np.zeros((3000, 48, 64, 3), np.uint8))
    proc = subprocess.Popen(
        [
            *testlib.device_command(),
            "classify",
            "--video",
            video,
            "--artifact",
            artifacts.get(size=32),
            "--log",
            tmp_path / "frames.csv",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    first = proc.stdout.readline()
    assert first.startswith("#0 long.avi"), first + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped    SIGINT" in out and "SIGINT received" in err
    frames = int(out.split("frames     ")[1].split()[0])
    assert 1 <= frames < 3000
    assert len(list(csv.DictReader((tmp_path / "frames.csv").open()))) == frames
