"""``bhvit-device eval``: accuracy on a labelled tree and on the Oxford-IIIT Pet layout, against the numpy oracle."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import bhvit_device_testlib as testlib  # registered by conftest.py
import numpy as np
import pytest
from bhvit.device import cli
from bhvit.device.artifact import load_artifact, read_metadata, save_artifact
from bhvit.device.preprocess import Preprocessor
from click.testing import CliRunner
from PIL import Image

SIZE = 32


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cli.ARTIFACT_ENV, raising=False)
    return lambda *args: CliRunner().invoke(cli.main, [str(a) for a in args])


def _images(folder: Path, count: int, seed: int, suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img_{i}{suffix}"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _expected(paths_labels: list[tuple[Path, int]]) -> tuple[int, int]:
    """(top-1 hits, top-5 hits) of the oracle on the same images."""
    prep = Preprocessor(testlib.preprocess_cfg(SIZE))
    top1 = top5 = 0
    for path, label in paths_labels:
        logits = testlib.reference_logits(prep(Image.open(path)), testlib.weights())[0]
        order = np.argsort(-logits, kind="stable")
        top1 += int(order[0] == label)
        top5 += int(label in order[:5])
    return top1, top5


@pytest.fixture
def tree(tmp_path) -> tuple[Path, list[tuple[Path, int]]]:
    """Three class folders (one nested), four images each, plus a corrupt file."""
    root = tmp_path / "data"
    samples = []
    for label in (0, 1, 3):
        folder = root / testlib.PETS[label] / ("nested" if label == 3 else "")
        samples += [(p, label) for p in _images(folder, 4, seed=label)]
    (root / testlib.PETS[0] / "broken.jpg").write_bytes(b"not a jpeg")
    return root, samples


def test_eval_scores_a_labelled_tree_like_the_oracle(run, artifacts, tree, tmp_path):
    root, samples = tree
    art = artifacts.get(size=SIZE)
    log = tmp_path / "images.jsonl"
    result = run("eval", "--artifact", art, "--dir", root, "--json", "--log", log)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    top1, top5 = _expected(samples)
    assert report["images"] == 12 and report["skipped"] == 1
    assert report["top1"] == pytest.approx(100 * top1 / 12) and report["top5"] == pytest.approx(100 * top5 / 12)
    confusion = np.array(report["confusion"])
    assert confusion.shape == (5, 5) and confusion.sum() == 12 and confusion[[0, 1, 3]].sum(1).tolist() == [4, 4, 4]
    assert report["per_class"][testlib.PETS[2]] is None and report["images_per_s"] > 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 12 and sum(r["correct"] for r in records) == top1
    assert {r["label"] for r in records} == {testlib.PETS[i] for i in (0, 1, 3)} and len(records[0]["topk"]) == 5


def test_eval_text_report_csv_log_plot_and_limit(run, artifacts, tree, tmp_path):
    pytest.importorskip("matplotlib")
    root, _ = tree
    log, plot = tmp_path / "images.csv", tmp_path / "confusion.png"
    result = run(
        "eval", "--artifact", artifacts.get(size=SIZE), "--dir", root, "--limit", 5, "--log", log, "--plot", plot
    )
    assert result.exit_code == 0, result.output
    assert "top-1" in result.output and "per class" in result.output and "images/s" in result.output
    with open(log) as f:
        assert len(list(csv.DictReader(f))) == 4  # the 5th of the sorted list is the corrupt file
    assert "skipped 1" in result.output
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_eval_pets_layout_uses_the_test_split(run, artifacts, tmp_path):
    root = tmp_path / "pets" / "oxford-iiit-pet"
    (root / "annotations").mkdir(parents=True)
    lines, samples = ["#Image CLASS-ID SPECIES BREED ID"], []
    for label, name in enumerate(testlib.PETS[:3]):
        for i, path in enumerate(_images(root / "images", 2, seed=10 + label, suffix=".jpg")):
            image_id = f"{name}_{i + 1}"
            path = path.rename(root / "images" / f"{image_id}.jpg")
            lines.append(f"{image_id} {label + 1} 1 {label + 1}")
            samples.append((path, label))
    (root / "annotations" / "test.txt").write_text("\n".join(lines) + "\n")
    _images(root / "images", 1, seed=99)  # not in the split: ignored
    result = run("eval", "--artifact", artifacts.get(size=SIZE), "--pets", root.parent, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    assert report["images"] == 6 and report["top1"] == pytest.approx(100 * _expected(samples)[0] / 6)


def test_eval_refuses_unknown_class_folders_and_bad_options(run, artifacts, tree):
    root, _ = tree
    art = artifacts.get(size=SIZE)
    _images(root / "Sphynx", 1, seed=5)
    result = run("eval", "--artifact", art, "--dir", root)
    assert result.exit_code == 2 and "Sphynx" in result.output and "not among the artifact's 5 classes" in result.output
    assert run("eval", "--artifact", art).exit_code == 2
    assert run("eval", "--artifact", art, "--dir", root, "--pets", root).exit_code == 2
    assert run("eval", "--artifact", art, "--dir", root, "--log", "x.txt").exit_code == 2


def test_unverified_artifact_warns_in_classify_bench_and_eval(run, artifacts, tree, tmp_path):
    art = artifacts.copy(tmp_path / "unverified", size=SIZE)
    save_artifact(art, replace(read_metadata(art), verification=None))
    load_artifact(art)  # still loadable: the warning is not a refusal
    for args in (
        ("classify", "--image", testlib.SAMPLES / "chelsea.png"),
        ("bench", "--runs", 1),
        ("eval", "--dir", tree[0]),
    ):
        result = CliRunner().invoke(cli.main, [str(a) for a in (args[0], "--artifact", art, *args[1:])])
        assert result.exit_code == 0, result.output
        assert "not verified against PyTorch" in result.output
    info = run("info", "--artifact", art)
    assert "verified   no (--no-verify)" in info.output
