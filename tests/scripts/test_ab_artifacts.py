"""scripts/ab_artifacts.py: artifacts alternated in one process, ratios per round (what it measures is not
asserted: no timed tests; its rows, their reference and its refusals are)."""

from __future__ import annotations

import json
import shutil

import ab_artifacts
import pytest


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from bhvit.compile.compiler import CompileOptions, compile_model
    from bhvit.compile.source import random_init
    from bhvit.compile.targets import resolve_target

    out = tmp_path_factory.mktemp("ab") / "onnx"
    compile_model(random_init("test_bhvit", precision="binary"), CompileOptions(resolve_target("host"), out, "onnx"))
    return out


def test_each_artifact_gets_its_median_ratio_to_the_first(onnx_artifact, tmp_path, capsys):
    twin = tmp_path / "twin"
    shutil.copytree(onnx_artifact, twin)
    rows = ab_artifacts.compare([onnx_artifact, twin], threads=1, rounds=7, warmup=1)
    assert [r.artifact for r in rows] == [str(onnx_artifact), str(twin)]
    ab_artifacts.main([str(onnx_artifact), str(twin), "--rounds", "3", "--threads", "1", "--json"])
    assert [row["artifact"] for row in json.loads(capsys.readouterr().out)] == [str(onnx_artifact), str(twin)]


def test_ratios_are_medians_of_same_round_ratios(onnx_artifact, monkeypatch):
    """A clock that each run advances by the next of ``costs`` (ms), in run order (the second round runs B first):
    B/A per round is 2, 0.5 and 3, so B's ratio is 2, while both medians are 2 ms (their quotient would say 1)."""
    import bhvit.device.runtime as runtime

    clock, costs = [0.0], iter([1.0, 2.0, 1.0, 2.0, 10.0, 30.0])

    def run(x):
        clock[0] += next(costs) / 1000

    monkeypatch.setattr(runtime, "load_model", lambda artifact, threads=None: run)
    monkeypatch.setattr(ab_artifacts.time, "perf_counter", lambda: clock[0])
    a, b = ab_artifacts.compare([onnx_artifact, onnx_artifact], threads=1, rounds=3, warmup=0)
    assert (a.ratio, b.ratio) == pytest.approx((1.0, 2.0))
    assert (a.median_ms, a.min_ms, b.median_ms, b.min_ms) == pytest.approx((2.0, 1.0, 2.0, 1.0))


def test_artifacts_of_different_input_sizes_are_refused(onnx_artifact, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(onnx_artifact, other)
    meta = json.loads((other / "metadata.json").read_text())
    size = meta["preprocess"]["input_size"]
    meta["preprocess"].update(input_size=size * 2, crop=size * 2, resize=size * 2)
    (other / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="different input sizes"):
        ab_artifacts.compare([onnx_artifact, other], threads=1, rounds=1)


def test_a_missing_artifact_is_refused_with_its_path(tmp_path):
    with pytest.raises(SystemExit, match="nowhere"):
        ab_artifacts.compare([tmp_path / "nowhere", tmp_path / "nowhere"], threads=1, rounds=1)
