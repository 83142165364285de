"""``bhvit-compile --eval-dir``: the checkpoint in PyTorch and the compiled code, scored on the same images.

Both see the same arrays (decoded and preprocessed once, with the artifact's own preprocessing); PyTorch runs the
model in FP32 and eval mode, so the two top-1s differ only where the compiled code computes another function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bhvit.device.evaluate import evaluate_models, labelled_images, one_at_a_time
from bhvit.device.preprocess import Preprocessor

from .source import ModelSource

__all__ = ["evaluate_source", "torch_predict"]


def torch_predict(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """``model`` as a numpy batch predictor: FP32, eval mode, no autograd."""
    model = model.float().eval()

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x)).numpy()

    return predict


def evaluate_source(
    source: ModelSource, compiled: Callable[[np.ndarray], np.ndarray], data: Path, runs_on: str
) -> dict:
    """Top-1 of PyTorch and of ``compiled`` on the labelled images under ``data`` (a class tree or Oxford-IIIT
    Pet), their per-image top-1 agreement and the image count: the ``"evaluation"`` record of ``metadata.json``."""
    samples = labelled_images(data, source.class_names)
    results = evaluate_models(
        {"pytorch": torch_predict(source.model), "artifact": one_at_a_time(compiled)},
        samples,
        Preprocessor(source.preprocess),
        source.class_names,
        progress=sys.stderr.isatty(),
    )
    ref, got = results["pytorch"], results["artifact"]
    agree = float(np.mean(np.equal(ref.predictions, got.predictions))) if ref.predictions else 0.0
    return {
        "data": str(data),
        "images": ref.images,
        "skipped": ref.skipped,
        "pytorch_top1": ref.top1,
        "artifact_top1": got.top1,
        "pytorch_top5": ref.top5,
        "artifact_top5": got.top5,
        "agreement": 100.0 * agree,
        "runs_on": runs_on,
    }
