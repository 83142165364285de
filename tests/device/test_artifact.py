"""Artifact contract: round trip, and refusal before loading (file names, checksums, architecture, CPU features,
runtime version, format)."""

from __future__ import annotations

import json
import logging

import pytest
from bhvit.device import artifact as art_mod
from bhvit.device.artifact import (
    ArtifactError,
    ArtifactMeta,
    PreprocessCfg,
    TargetInfo,
    load_artifact,
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


def _fake_artifact(tmp_path, arch=None, features=(), link_to=None):
    """An artifact whose library is garbage (or a symbolic link to ``link_to``): loading it would fail, so only the
    checks can refuse it."""
    tmp_path.mkdir(exist_ok=True)
    if link_to is None:
        (tmp_path / "model.so").write_bytes(b"not an ELF file")
    else:
        (tmp_path / "model.so").symlink_to(link_to)
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
        ({"format_version": 2}, "format_version 2 is not supported"),  # hand-written CPU feature list: rebuild
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


def test_llvm_feature_spellings_in_metadata_are_checked_under_the_kernel_names(tmp_path, monkeypatch):
    # what the checks compare: an aarch64 machine with NEON and dot product, but no crypto extensions
    monkeypatch.setattr(art_mod, "host_arch", lambda: "aarch64")
    monkeypatch.setattr(art_mod, "cpu_features", lambda: frozenset({"fp", "asimd", "asimddp"}))
    _fake_artifact(tmp_path, arch="aarch64", features=("+neon", "+dotprod", "fp-armv8", "a76", "v8.2a"))
    assert load_artifact(tmp_path).meta.target.cpu_features[:2] == ("+neon", "+dotprod")
    _fake_artifact(tmp_path, arch="aarch64", features=("+neon", "+aes"))
    with pytest.raises(ArtifactError, match=r"cpu features: found missing \['aes', 'pmull'\]"):
        load_artifact(tmp_path)


@pytest.mark.parametrize(
    "key, value, why",
    [
        ("library", "../model.so", "leads out of the directory with '..'"),
        ("library", "/usr/lib/libc.so.6", "is an absolute path"),
        ("files", {"model.so": "0" * 64, "sub/../../x": "0" * 64}, "leads out of the directory"),
        ("files", {"model.so": "0" * 64, "..\\x": "0" * 64}, "has a backslash"),
        ("library", "", "not a file name"),
    ],
)
def test_file_names_leading_out_of_the_artifact_are_refused_before_any_file_is_read(tmp_path, key, value, why):
    _fake_artifact(tmp_path)
    _edit_metadata(tmp_path, **{key: value})
    with pytest.raises(ArtifactError, match=rf"unsafe file name .*: it {why}.*relative path inside the artifact"):
        load_artifact(tmp_path)


def test_weights_file_name_leading_out_of_the_artifact_is_refused(artifacts, tmp_path):
    path = artifacts.copy(tmp_path / "a")
    _edit_metadata(path, weights__file="../weights.bin")
    with pytest.raises(ArtifactError, match=r"unsafe file name '../weights.bin'"):
        read_metadata(path)


def test_symbolic_link_leading_out_of_the_artifact_is_refused_unread(tmp_path, monkeypatch):
    outside = tmp_path / "outside.so"
    outside.write_bytes(b"someone else's library")
    art = tmp_path / "a"
    _fake_artifact(art, link_to=outside)
    hashed = []
    monkeypatch.setattr(art_mod, "file_sha256", lambda path: hashed.append(path) or "0" * 64)
    with pytest.raises(ArtifactError, match=rf"file model.so: found a link to {outside}, need a file inside"):
        load_artifact(art)
    assert hashed == []


def test_artifact_reached_through_a_link_and_holding_inner_links_is_accepted(tmp_path):
    art = tmp_path / "a"
    art.mkdir()
    (art / "real.so").write_bytes(b"library")
    _fake_artifact(art, link_to="real.so")
    (tmp_path / "latest").symlink_to("a", target_is_directory=True)
    assert load_artifact(tmp_path / "latest").meta.library == "model.so"


def _with_tvm_versions(monkeypatch, tmp_path, built: dict, installed: dict):
    _fake_artifact(tmp_path)
    _edit_metadata(tmp_path, versions=built)
    monkeypatch.setattr(art_mod, "_installed_version", installed.get)


def test_artifact_built_with_another_tvm_release_is_refused_with_the_fix(tmp_path, monkeypatch):
    built = {"tvm": "0.27.0.post1", "tvm_ffi": "0.1.14.post1"}
    _with_tvm_versions(monkeypatch, tmp_path, built, {"apache-tvm": "0.28.0", "apache-tvm-ffi": "0.1.14.post1"})
    with pytest.raises(ArtifactError) as err:
        load_artifact(tmp_path)
    assert str(err.value).endswith(
        "refusing artifact, apache-tvm: found 0.28.0, need 0.27.0.post1 as the artifact was built with: "
        "`pip install apache-tvm==0.27.0.post1` here, or rebuild the artifact with apache-tvm 0.28.0"
    )


def test_artifact_without_installed_tvm_is_refused_before_loading(tmp_path, monkeypatch):
    _with_tvm_versions(monkeypatch, tmp_path, {"tvm": "0.27.0.post1"}, {})
    monkeypatch.setattr(art_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ArtifactError, match=r"apache-tvm: found not installed, need `pip install apache-tvm==0.27"):
        load_artifact(tmp_path)


def test_tvm_without_package_metadata_loads_with_a_warning(tmp_path, monkeypatch, caplog):
    _with_tvm_versions(monkeypatch, tmp_path, {"tvm": "0.27.0.post1"}, {"apache-tvm-ffi": "0.1.14.post1"})
    with caplog.at_level(logging.WARNING, logger="bhvit.device.artifact"):
        load_artifact(tmp_path)
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "apache-tvm: found tvm without package metadata (version unknown), need 0.27.0.post1",
        "apache-tvm-ffi: found 0.1.14.post1, need the version it was built with (not recorded: rebuild the artifact)",
    ]


def test_onnxruntime_use_of_a_tvm_artifact_does_not_need_tvm(tmp_path, monkeypatch):
    _with_tvm_versions(monkeypatch, tmp_path, {"tvm": "0.27.0.post1"}, {})
    assert load_artifact(tmp_path, runtime="onnxruntime").meta.runtime == "tvm"


@pytest.mark.parametrize(
    "built, installed, warned",
    [
        ({"tvm": "0.27.0.post1", "tvm_ffi": "0.1.14.post1"}, {"apache-tvm": "0.27.0.post1"}, ""),
        ({"tvm": "0.27.0.post1", "tvm_ffi": "0.1.14.post1"}, {"apache-tvm": "0.27.1"}, "same 0.27 series"),
        (
            {"tvm": "0.27.0.post1"},
            {"apache-tvm": "0.27.0.post1"},
            "apache-tvm-ffi: found 0.1.14.post1, need the version it was",
        ),
    ],
    ids=["same", "same-series", "not-recorded"],
)
def test_compatible_tvm_versions_load_and_differences_are_warned(
    tmp_path, monkeypatch, caplog, built, installed, warned
):
    _with_tvm_versions(monkeypatch, tmp_path, built, {"apache-tvm-ffi": "0.1.14.post1"} | installed)
    with caplog.at_level(logging.WARNING, logger="bhvit.device.artifact"):
        load_artifact(tmp_path)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == (1 if warned else 0) and all(warned in m for m in messages)


def test_save_records_the_installed_tvm_packages(tmp_path):
    meta = _fake_artifact(tmp_path)
    assert meta.versions["tvm"] == art_mod._installed_version("apache-tvm")
    assert meta.versions["tvm_ffi"] == art_mod._installed_version("apache-tvm-ffi")


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
