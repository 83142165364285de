"""Runtimes: TVM (its runtime library through tvm_ffi) and onnxruntime agree with the numpy oracle; no compiler or
torch needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import bhvit_device_testlib as testlib  # registered by conftest.py
import numpy as np
import pytest
from bhvit.device.artifact import ArtifactError, load_artifact
from bhvit.device.runtime import load_model, resolve_threads


@pytest.mark.parametrize(
    "kwargs",
    [dict(runtime="tvm"), dict(runtime="tvm", tuple_output=True), dict(runtime="onnxruntime")],
    ids=["tvm", "tvm-tuple", "onnxruntime"],
)
def test_runtime_logits_match_numpy_reference(artifacts, kwargs):
    model = load_model(load_artifact(artifacts.get(size=32, **kwargs)))
    x = np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
    logits = model(x)
    assert logits.shape == (len(testlib.PETS),)
    np.testing.assert_allclose(logits, testlib.reference_logits(x, testlib.weights())[0], rtol=1e-4, atol=1e-5)


def test_runtime_choice_and_threads_follow_arguments(artifacts, monkeypatch):
    monkeypatch.delenv("TVM_NUM_THREADS")
    art = load_artifact(artifacts.get(both=True))
    onnx_model = load_model(art, runtime="onnxruntime", threads=2)
    tvm_model = load_model(art, threads=2)
    assert (onnx_model.runtime, onnx_model.threads, tvm_model.runtime, tvm_model.threads) == (
        "onnxruntime",
        2,
        "tvm",
        2,
    )
    assert load_model(art).threads == art.meta.threads
    x = np.random.default_rng(2).normal(size=(1, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(tvm_model(x), onnx_model(x), rtol=1e-4, atol=1e-5)


def test_threads_come_from_the_option_then_tvm_num_threads_then_the_artifact(artifacts, monkeypatch):
    art = load_artifact(artifacts.get(both=True))  # built for 1 thread
    monkeypatch.setenv("TVM_NUM_THREADS", "2")
    assert (resolve_threads(art, "tvm", 3), resolve_threads(art, "tvm"), resolve_threads(art, "onnxruntime")) == (
        3,
        2,
        1,
    )
    assert load_model(art, threads=3).threads == 3 and os.environ["TVM_NUM_THREADS"] == "2"  # left as it was
    assert load_model(art).threads == 2
    monkeypatch.delenv("TVM_NUM_THREADS")
    assert load_model(art, threads=2).threads == 2 and "TVM_NUM_THREADS" not in os.environ
    assert load_model(art).threads == art.meta.threads == 1


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_tvm_num_threads_is_refused_with_the_fix(artifacts, monkeypatch, value):
    monkeypatch.setenv("TVM_NUM_THREADS", value)
    with pytest.raises(ArtifactError, match=rf"TVM_NUM_THREADS='{value}' is not a positive whole number: unset it"):
        load_model(load_artifact(artifacts.get()))
    assert resolve_threads(load_artifact(artifacts.get()), "tvm", threads=2) == 2  # --threads needs no variable


def test_runtime_unknown_name_is_refused(artifacts):
    with pytest.raises(ArtifactError, match="unknown runtime 'tflite'"):
        load_model(load_artifact(artifacts.get()), runtime="tflite")


# A fresh interpreter where torch, timm and the TVM compiler cannot be imported.
_BLOCKED_RUN = textwrap.dedent("""
    import importlib.abc, json, sys
    BLOCKED = ("torch", "torchvision", "timm", "tvm.relax", "onnx")
    attempts = []
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                attempts.append(name)
                raise ModuleNotFoundError(f"{name} blocked for this test", name=name)
    sys.meta_path.insert(0, Blocker())
    from bhvit.device.cli import main
    for artifact in sys.argv[3:]:
        main(["classify", "--artifact", artifact, "--image", sys.argv[1], "--json", "--log", artifact + ".csv"],
             standalone_mode=False)
        main(["eval", "--artifact", artifact, "--dir", sys.argv[2], "--json"], standalone_mode=False)
    maps = open("/proc/self/maps").read()
    try:
        import torch  # noqa: F401
        active = False
    except ModuleNotFoundError:
        active = True
    print(json.dumps({"blocker_active": active, "compiler_mapped": "libtvm_compiler" in maps,
                      "runtime_mapped": "libtvm_runtime" in maps,
                      "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "onnx")
                                       or m.startswith("tvm.relax")), "attempts": attempts}))
""")


def test_device_runs_without_torch_timm_or_tvm_compiler(artifacts, tmp_path):
    tvm_art = artifacts.copy(tmp_path / "tvm", size=32)
    onnx_art = artifacts.copy(tmp_path / "onnx", runtime="onnxruntime", size=32)
    labelled = tmp_path / "labelled" / testlib.PETS[0]
    labelled.mkdir(parents=True)
    shutil.copy(testlib.SAMPLES / "chelsea.png", labelled)
    image = str(testlib.SAMPLES / "chelsea.png")
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED_RUN, image, str(labelled.parent), str(tvm_art), str(onnx_art)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    frames = [line for line in lines if line.get("type") == "frame"]
    assert len(frames) == 2 and frames[0]["label"] == frames[1]["label"]
    scores = [line for line in lines if "top1" in line]
    assert len(scores) == 2 and [s["images"] for s in scores] == [1, 1]
    assert scores[0]["top1"] == scores[1]["top1"] == (100.0 if frames[0]["label"] == testlib.PETS[0] else 0.0)
    report = lines[-1]
    assert report["blocker_active"] and report["runtime_mapped"] and not report["compiler_mapped"]
    assert report["loaded"] == []


@pytest.mark.parametrize("package", ["torch", "ml_dtypes", "cuda.bindings"])
def test_tvm_runtime_does_not_import_unneeded_installed_packages(artifacts, tmp_path, package):
    """tvm_ffi imports torch (hundreds of MiB), ml_dtypes (seconds) and the CUDA bindings eagerly when they are
    installed; the device runtime keeps them out, and they stay importable afterwards."""
    pytest.importorskip(package, reason="the check is about a machine where it is installed")
    art = artifacts.copy(tmp_path / "tvm", size=32)
    top = package.split(".")[0]
    code = textwrap.dedent(f"""
        import importlib, sys
        import numpy as np
        from bhvit.device.artifact import load_artifact
        from bhvit.device.runtime import load_model, resolve_threads
        model = load_model(load_artifact({str(art)!r}))
        model(np.zeros((1, 3, 32, 32), np.float32))
        loaded = {top!r} in sys.modules
        importlib.import_module({package!r})  # still importable afterwards
        print(loaded, {package!r} in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
