"""End-to-end: test_bhvit (random init, and trained-like: every parameter and buffer moved off its init) ->
artifact -> run it as the device does, compare with PyTorch."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from bhvit.compile.verify import compare
from bhvit.device.artifact import file_sha256, load_artifact
from bhvit.device.runtime import load_model

pytestmark = pytest.mark.tvm

VARIANTS = [("binary", False, False), ("fp32", False, False), ("binary", True, False)]
TRAINED = [("binary", False, True), ("binary", True, True)]


@pytest.mark.parametrize(
    "precision,fp_downsample,trained",
    VARIANTS + TRAINED,
    ids=["binary", "fp32", "binary-fpds", "trained-binary", "trained-binary-fpds"],
)
def test_artifact_matches_pytorch_on_random_inputs(compiled, precision, fp_downsample, trained):
    source, out, meta = compiled(precision, fp_downsample, trained=trained)
    assert meta.verification["passed"]
    model = load_model(load_artifact(out))
    gen = torch.Generator().manual_seed(123)
    x = torch.randn((4, *source.input_shape[1:]), generator=gen) * 2
    with torch.no_grad():
        ref = source.model(x).numpy()
    got = np.stack([model(xi[None].numpy()) for xi in x])
    assert compare(ref, got, "artifact").passed


def test_every_binary_layer_lowers_to_a_bitpacked_kernel(compiled):
    from bhvit.compile.lower import lower
    from bhvit.compile.targets import resolve_target

    source, _, _ = compiled("binary")
    text = lower(source.model, resolve_target("host"), source.input_shape)["main"].script()
    expected = Counter(info.kind for info in source.model.binary_layers() if info.precision == "binary")
    assert text.count("R.call_tir(bdense_") == expected["linear"] > 0
    assert text.count("R.call_tir(bconv2d_") == expected["conv2d"] > 0
    assert text.count("R.call_tir(bqk_") == text.count("R.call_tir(bav_") == expected["attention"] > 0


def test_artifact_metadata_complete_and_checksums_right(compiled):
    source, out, meta = compiled("binary")
    data = json.loads((out / "metadata.json").read_text())
    for key in (
        "format",
        "format_version",
        "runtime",
        "library",
        "target",
        "threads",
        "model",
        "class_names",
        "preprocess",
        "cost",
        "files",
        "versions",
        "verification",
        "created",
    ):
        assert key in data, key
    assert data["format"] == "bhvit-artifact" and data["format_version"] == 3 and data["runtime"] == "tvm"
    assert data["target"]["arch"] == "x86_64" and data["target"]["tvm"]["kind"] == "llvm"
    assert data["model"]["name"] == "test_bhvit.w1a1" and data["model"]["config"]["num_classes"] == 10
    assert len(data["class_names"]) == 10 and data["preprocess"]["input_size"] == 64
    assert set(data["files"]) == {"model.so", "weights.bin"}
    assert data["files"]["model.so"] == file_sha256(out / "model.so")
    assert data["weights"]["file"] == "weights.bin"
    layout = data["weights"]["tensors"]
    assert layout and all(t["offset"] % 64 == 0 for t in layout)
    assert (out / "weights.bin").stat().st_size == max(
        t["offset"] + np.dtype(t["dtype"]).itemsize * int(np.prod(t["shape"])) for t in layout
    )
    assert {"deployable_mib", "mops", "artifact_mib"} <= set(data["cost"])
    assert {"torch", "tvm", "tvm_ffi", "bhvit"} <= set(data["versions"])
    from bhvit.compile.targets import resolve_target

    assert data["target"]["cpu_features"] == list(resolve_target("host").cpu_features)  # LLVM's, for the host mcpu
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.so", "weights.bin"]  # no temp files


@pytest.mark.skipif(
    not __import__("shutil").which("aarch64-linux-gnu-gcc"),
    reason="needs aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu)",
)
def test_rpi5_cross_compile_gives_aarch64_elf_verified_by_host_twin(compiled):
    _, out, meta = compiled("binary", target="rpi5")
    head = (out / "model.so").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    assert meta.target.arch == "aarch64" and meta.target.tvm["mcpu"] == "cortex-a76"
    assert {"asimd", "asimddp", "fphp", "lrcpc"} <= set(meta.target.cpu_features)
    assert meta.verification["passed"] and "host" in meta.verification["runs_on"]
