"""The ONNX routes: FP32 matches PyTorch in onnxruntime, INT8 runs and mostly agrees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from bhvit.compile.onnx_export import export_onnx, quantize_int8
    from bhvit.compile.source import random_init

    source = random_init("test_bhvit")
    d = tmp_path_factory.mktemp("onnx")
    fp32 = export_onnx(source.model, source.input_shape, d / "fp32.onnx")
    return source, fp32, quantize_int8(fp32, d / "int8.onnx")


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": xi[None]})[0] for xi in x])


def test_onnx_fp32_matches_pytorch(exported):
    source, fp32, _ = exported
    x = torch.randn(4, *source.input_shape[1:])
    with torch.no_grad():
        ref = source.model(x).numpy()
    got = _run(fp32, x.numpy())
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_onnx_int8_runs_with_int8_weights(exported):
    import onnx

    source, fp32, int8 = exported
    graph = onnx.load(str(int8)).graph
    assert any(n.op_type in ("MatMulInteger", "ConvInteger", "DynamicQuantizeLinear") for n in graph.node)
    assert int8.stat().st_size < fp32.stat().st_size
    got = _run(int8, torch.randn(2, *source.input_shape[1:]).numpy())
    assert got.shape == (2, 10) and np.isfinite(got).all()
