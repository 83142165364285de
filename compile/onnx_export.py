"""The ONNX routes (the thesis' deployment): FP32 ONNX and onnxruntime INT8, for comparison with the TVM kernels.

Binary layers are exported in their deploy form with plain torch ops (:data:`~bhvit.models.layers.EAGER`): the
weights as a ±1 FP constant with ``alpha``·BN folded into a per-channel scale and bias, and a sign
(``where(x + shift >= 0, 1, -1)``) on the activations, so the FP32 graph computes what the model does.
INT8 applies ``onnxruntime.quantization.quantize_dynamic`` with per-channel int8 weights (±1 weights are exact
in int8; activations are quantised per tensor at run time).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from bhvit.models.layers import EAGER
from torch import nn

from .deploy import to_deploy

__all__ = ["export_onnx", "quantize_int8", "OPSET", "INPUT_NAME", "OUTPUT_NAME"]


OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@torch.no_grad()
def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """Write the FP32 ONNX graph of ``model`` (deploy form, fixed input shape) to ``path``."""
    deploy = to_deploy(model, EAGER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            deploy,
            (torch.zeros(input_shape),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
        )
    return path


def quantize_int8(fp32_path: Path, path: Path) -> Path:
    """onnxruntime dynamic INT8 quantisation of an FP32 ONNX file (per-channel int8 weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(path), per_channel=True, weight_type=QuantType.QInt8)
    return path
