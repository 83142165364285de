"""Compare a compiled model with PyTorch on random inputs.

Tolerance: the artifact computes the same function with FP32 reassociated (BN and alpha folded into one scale,
other summation orders in the FP ops), which moves logits by ~1e-6 relative. A binary net amplifies that: a
pre-activation within rounding of a sign threshold flips one bit, and every flip moves the layer's outputs by a
popcount step that later layers carry on. Measured on random-init BHViT-Tiny w=3 at 224x224 (8 inputs): PyTorch
against its own folded deploy form differs by up to 4e-4 of max|logit|, the compiled artifact by up to 2e-3. A
wrong kernel, bit order or fold moves logits by a large fraction of their range. We require
``max|dlogit| <= rtol * max(1, max|logit|)`` with ``rtol = 1e-2`` (5x the largest flip effect seen) and identical
top-1 on every input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from bhvit.device.artifact import PreprocessCfg
from bhvit.device.preprocess import Preprocessor
from bhvit.device.sources import load_image, sample_images
from torch import nn

__all__ = ["Verification", "verify", "compare", "verification_inputs", "RTOL", "NUM_INPUTS"]

RTOL = 1e-2
NUM_INPUTS = 8


@dataclass(frozen=True)
class Verification:
    passed: bool
    max_abs_err: float
    top1_agree: float
    tolerance: float
    inputs: int
    runs_on: str  # what ran the compiled code: "artifact" or "host build of the same graph"

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"max |logit err| {self.max_abs_err:.3g} (tolerance {self.tolerance:.3g}), top-1 agreement "
            f"{self.top1_agree:.0%} on {self.inputs} inputs ({self.runs_on})"
        )


def compare(ref: np.ndarray, got: np.ndarray, runs_on: str, rtol: float = RTOL) -> Verification:
    """Check ``(n, classes)`` logits ``got`` against the reference ``ref``: same top-1 and within the tolerance."""
    err = float(np.abs(got - ref).max())
    tol = rtol * max(1.0, float(np.abs(ref).max()))
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    return Verification(bool(err <= tol and agree == 1.0), err, agree, tol, len(ref), runs_on)


def verification_inputs(
    input_shape: tuple[int, ...], preprocess: PreprocessCfg, n: int = NUM_INPUTS, seed: int = 0
) -> torch.Tensor:
    """``n`` N(0, 1) inputs, then the bundled sample photos through the artifact's own preprocessing."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *input_shape[1:]), generator=gen)
    prep = Preprocessor(preprocess)
    photos = [torch.from_numpy(prep(load_image(p))) for p in sample_images()]
    return torch.cat([noise, *photos])


@torch.no_grad()
def verify(
    model: nn.Module,
    predict: Callable[[np.ndarray], np.ndarray],
    input_shape: tuple[int, ...],
    runs_on: str,
    preprocess: PreprocessCfg,
    n: int = NUM_INPUTS,
    seed: int = 0,
    rtol: float = RTOL,
) -> Verification:
    """Run ``model`` and ``predict`` (one ``(1, C, H, W)`` float32 array -> logits) on :func:`verification_inputs`."""
    xs = verification_inputs(input_shape, preprocess, n, seed)
    ref = model.float().eval()(xs).numpy()
    got = np.stack([np.asarray(predict(x[None].numpy())).reshape(-1) for x in xs])
    return compare(ref, got, runs_on, rtol)
