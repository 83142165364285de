"""scripts/bench_host.py rebuilds a cached artifact whenever the code or options that built it differ."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_host", ROOT / "scripts" / "bench_host.py")
bench_host = importlib.util.module_from_spec(spec)
sys.modules["bench_host"] = bench_host  # dataclasses look their module up
spec.loader.exec_module(bench_host)


def test_fingerprint_follows_options_and_code(monkeypatch, tmp_path):
    base = bench_host.fingerprint("tvm-binary-w1", 2, 224)
    assert base == bench_host.fingerprint("tvm-binary-w1", 2, 224)
    assert (
        len(
            {
                base,
                *(
                    bench_host.fingerprint(*o)
                    for o in [("tvm-binary-w3", 2, 224), ("tvm-binary-w1", 1, 224), ("tvm-binary-w1", 2, 64)]
                ),
            }
        )
        == 4
    )
    import bhvit.compile

    # one more source file under compile/ (the fingerprint reads every .py file there) changes it
    extra = tmp_path / "compile"
    extra.mkdir()
    for f in Path(bhvit.compile.__file__).resolve().parent.rglob("*.py"):
        target = extra / f.relative_to(Path(bhvit.compile.__file__).resolve().parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    (extra / "kernels" / "new_kernel.py").write_text("X = 1\n")
    monkeypatch.setattr(bhvit.compile, "__file__", str(extra / "__init__.py"))
    assert bench_host.fingerprint("tvm-binary-w1", 2, 224) != base


@pytest.mark.tvm
def test_cached_artifact_is_reused_only_with_the_same_fingerprint(monkeypatch, tmp_path):
    import bhvit.compile.compiler as compiler

    builds = []
    real = compiler.compile_model

    def counting(source, options):
        builds.append(options.output)
        return real(source, options)

    monkeypatch.setattr(compiler, "compile_model", counting)
    monkeypatch.setitem(bench_host.MODELS, "tiny", ("onnx", "binary", 1, False))
    monkeypatch.setattr(bench_host, "_source", lambda key, img: _tiny_source())
    out = bench_host.build("tiny", tmp_path, 1, 64)
    assert bench_host.build("tiny", tmp_path, 1, 64) == out and len(builds) == 1
    bench_host.build("tiny", tmp_path, 2, 64)  # other options: rebuilt
    assert len(builds) == 2
    (tmp_path / f"tiny{bench_host.FINGERPRINT_SUFFIX}").write_text('{"fingerprint": "from older code"}')
    bench_host.build("tiny", tmp_path, 2, 64)
    assert len(builds) == 3


def _tiny_source():
    from bhvit.compile.source import random_init

    return random_init("test_bhvit", precision="binary")


def test_ceiling_fraction_is_binary_macs_per_second_over_the_ceiling(monkeypatch):
    import bhvit.device.profile as profile
    from bhvit.models.cost import model_cost

    monkeypatch.setattr(profile, "popcount_ceiling", lambda threads: (1e9 * threads, "test"))
    monkeypatch.setitem(bench_host.MODELS, "tiny", ("tvm", "binary", 1, False))
    monkeypatch.setattr(bench_host, "_source", lambda key, img: _tiny_source())
    bops = model_cost(_tiny_source().model).bops
    assert bops > 0
    assert bench_host.ceiling_fraction("tiny", 2.0, 2, 64) == pytest.approx(bops / 2e-3 / 2e9)
    assert bench_host.ceiling_fraction("ort-fp32-w1", 2.0, 2, 64) is None
    monkeypatch.setattr(profile, "popcount_ceiling", lambda threads: (None, "unknown"))
    assert bench_host.ceiling_fraction("tiny", 2.0, 2, 64) is None
