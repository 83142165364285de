"""Artifact contract: round trip, and refusal before loading (checksums, architecture, CPU features, format)."""

from __future__ import annotations

import json

import pytest
from bhvit.device import artifact as art_mod
from bhvit.device.artifact import (
    ArtifactError,
    ArtifactMeta,
    PreprocessCfg,
    TargetInfo,
    load_artifact,
    normalize_feature,
    read_metadata,
    save_artifact,
    write_artifact_metadata,
)
from bhvit.device.host import cpu_features, host_arch


def _edit_metadata(path, **changes):
    data = json.loads((path / "metadata.json").read_text())
    for key, value in changes.items():
        target, _, field = key.partition("__")
        if field:
            data[target][field] = value
        else:
            data[key] = value
    (path / "metadata.json").write_text(json.dumps(data))


def _fake_artifact(tmp_path, arch=None, features=()):
    """An artifact whose library is garbage: loading it would fail, so only the checks can refuse it."""
    (tmp_path / "model.so").write_bytes(b"not an ELF file")
    return write_artifact_metadata(
        tmp_path,
        runtime="tvm",
        library="model.so",
        target=TargetInfo("rpi5", arch or host_arch(), cpu_features=features),
        class_names=["cat"],
        preprocess=PreprocessCfg(),
        model={"name": "x"},
    )


def test_artifact_metadata_round_trips(tmp_path):
    meta = _fake_artifact(tmp_path, features=("+neon",))
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "notes.txt").write_text("hi")
    meta = save_artifact(tmp_path, meta)
    assert set(meta.files) == {"model.so", "extra/notes.txt"}
    assert meta.versions["bhvit"] and meta.created
    assert read_metadata(tmp_path) == meta
    data = json.loads((tmp_path / "metadata.json").read_text())
    assert list(data)[:3] == ["format", "format_version", "runtime"]
    assert data["preprocess"]["mean"] == [0.485, 0.456, 0.406]


@pytest.mark.parametrize("name", ["model.so", "weights.bin"])
def test_artifact_with_tampered_file_is_refused(artifacts, tmp_path, name):
    path = artifacts.copy(tmp_path / "a")
    with open(path / name, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\xff")
    with pytest.raises(ArtifactError, match=rf"sha256 {name}: found [0-9a-f]{{16}}, need [0-9a-f]{{16}}"):
        load_artifact(path)


def test_artifact_whose_weights_file_is_not_listed_is_refused(artifacts, tmp_path):
    path = artifacts.copy(tmp_path / "a")
    data = json.loads((path / "metadata.json").read_text())
    del data["files"]["weights.bin"]
    (path / "metadata.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"weights: found files \['model.so'\], need 'weights.bin' among them"):
        load_artifact(path)


def test_artifact_with_missing_file_is_refused(artifacts, tmp_path):
    path = artifacts.copy(tmp_path / "a", runtime="onnxruntime")
    (path / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="found missing file"):
        load_artifact(path)


def test_artifact_for_other_arch_is_refused_before_loading(tmp_path, monkeypatch):
    other = "aarch64" if host_arch() != "aarch64" else "x86_64"
    _fake_artifact(tmp_path, arch=other)
    with pytest.raises(ArtifactError) as err:
        load_artifact(tmp_path)
    message = str(err.value)
    assert f"this machine is {host_arch()}" in message and f"need {other} (target 'rpi5')" in message
    assert "\n" not in message


def test_artifact_needing_missing_cpu_feature_is_refused(tmp_path):
    _fake_artifact(tmp_path, features=("+no_such_feature", sorted(cpu_features())[0]))
    with pytest.raises(ArtifactError, match=r"cpu features: found missing \['no_such_feature'\]"):
        load_artifact(tmp_path)


def test_artifact_with_present_features_is_accepted(tmp_path):
    _fake_artifact(tmp_path, features=tuple(sorted(cpu_features())[:3]))
    assert load_artifact(tmp_path).meta.target.name == "rpi5"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format": "something-else"}, "not a bhvit artifact"),
        ({"format_version": 1}, "format_version 1 is not supported"),  # weights inside the library: rebuild
        ({"runtime": "tflite"}, "unknown runtime 'tflite'"),
        ({"preprocess__crop": 300}, "need 0 < crop <= resize"),
    ],
)
def test_artifact_with_bad_metadata_is_refused(tmp_path, changes, message):
    _fake_artifact(tmp_path)
    _edit_metadata(tmp_path, **changes)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path)


def test_artifact_without_metadata_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="no metadata.json"):
        load_artifact(tmp_path)


def test_artifact_library_for_other_runtime_is_found_or_refused(artifacts):
    both = load_artifact(artifacts.get("tvm", both=True))
    assert both.library_for("onnxruntime").name == "model.onnx"
    only_tvm = load_artifact(artifacts.get("tvm"))
    with pytest.raises(
        ArtifactError, match=r"no onnxruntime library: found \['model.so', 'weights.bin'\], need a \*.onnx file"
    ):
        only_tvm.library_for("onnxruntime")


def test_feature_names_accept_llvm_spelling():
    assert normalize_feature("+neon") == "asimd"
    assert normalize_feature("+dotprod") == "asimddp"
    assert normalize_feature("+avx512vpopcntdq") == "avx512vpopcntdq"


def test_artifact_meta_keeps_tuples_for_json_lists():
    meta = ArtifactMeta.from_dict(
        ArtifactMeta(
            runtime="onnxruntime",
            library="m.onnx",
            target=TargetInfo("host", "AMD64", cpu_features=["avx2"]),
            class_names=["a", "b"],
        ).to_dict()
    )
    assert meta.class_names == ("a", "b") and meta.target.cpu_features == ("avx2",)
    assert meta.target.arch == "x86_64"
    assert art_mod.LIBRARY_SUFFIX[meta.runtime] == ".onnx"
