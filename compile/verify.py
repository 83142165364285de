"""Verify a compiled model against PyTorch: random inputs and the bundled photos, a criterion from measurements.

Inputs: 8 N(0, 1) tensors and the bundled sample photos (``device/samples``) through the artifact's own
preprocessing. Per input ``i`` the error is ``e_i = max |dlogit_i| / max(1, max |logit_i|)``.

Why not one tolerance on the largest error: the artifact computes the model's function with FP32 reassociated
(BatchNorm and alpha folded into one scale, other summation orders), which moves logits by ~1e-7 relative, but a
binary net turns a pre-activation that lies within rounding of a sign threshold into a flipped bit, and a flip moves
every later layer by a popcount step. How far depends on the input; nothing bounds it tightly. Measured on
trained-like models (:func:`bhvit.models.perturb_like_trained`: LayerScales non-zero, BN statistics and affine random,
RPReLU and learned shifts random, attention quantisers initialised), 35 inputs each:

* correct test_bhvit (64x64) artifacts, binary w=1, 2, 3 and FP downsampling: {correct}
* bhvit_tiny at 224x224, PyTorch against its own folded deploy form (the same reassociation, no TVM): {eager}
* a correct w=3 FP-downsampling bhvit_tiny artifact has been seen 1.3e-2 off on one photo (one flip cascade).

Broken deploy forms (test_bhvit w=1, trained-like) are wrong on *every* input: a dropped BatchNorm fold gives
``e_i`` from 3.7e-2 to 0.20 (median 8.1e-2), one zeroed shift branch 7.1e-2 to 0.20 (median 0.12), reversed bit
order of the packed weights 0.63 to 0.95 (median 0.71). None of them changed a top-1 of these models, so top-1
agreement alone would not catch them.

The criterion therefore asks what a flip cannot fake and a fault cannot avoid: the *median* ``e_i`` at most
``MEDIAN_RTOL = 1e-3`` (most inputs carry no flip and match to reassociation accuracy; the faults' medians are 80x
above it), and every ``e_i`` at most ``MAX_RTOL = 5e-2`` (4x the largest flip cascade seen; below every fault's
largest error). Top-1 agreement is reported, not required: a top-1 can only move where a flip moves the logits by
more than half the margin of the two best classes.
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

__all__ = ["Verification", "verify", "compare", "verification_inputs", "MEDIAN_RTOL", "MAX_RTOL", "NUM_INPUTS"]

MEDIAN_RTOL = 1e-3
MAX_RTOL = 5e-2
NUM_INPUTS = 8


@dataclass(frozen=True)
class Verification:
    passed: bool
    median_rel_err: float  # median over inputs of max |dlogit| / max(1, max |logit|)
    max_rel_err: float
    max_abs_err: float
    top1_agree: float
    inputs: int
    runs_on: str  # what ran the compiled code: "artifact" or "host build of the same graph"
    median_rtol: float = MEDIAN_RTOL
    max_rtol: float = MAX_RTOL

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"relative logit error median {self.median_rel_err:.3g} (tolerance {self.median_rtol:g}), max "
            f"{self.max_rel_err:.3g} (tolerance {self.max_rtol:g}), max |logit err| {self.max_abs_err:.3g}, top-1 "
            f"agreement {self.top1_agree:.0%} on {self.inputs} inputs ({self.runs_on})"
        )


def compare(
    ref: np.ndarray, got: np.ndarray, runs_on: str, median_rtol: float = MEDIAN_RTOL, max_rtol: float = MAX_RTOL
) -> Verification:
    """Check ``(n, classes)`` logits ``got`` against the reference ``ref`` with the criterion above."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64).reshape(ref.shape)
    rel = np.abs(got - ref).max(1) / np.maximum(1.0, np.abs(ref).max(1))
    median, worst = float(np.median(rel)), float(rel.max())
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    passed = bool(median <= median_rtol and worst <= max_rtol)
    err = float(np.abs(got - ref).max())
    return Verification(passed, median, worst, err, agree, len(ref), runs_on, median_rtol, max_rtol)


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
) -> Verification:
    """Run ``model`` and ``predict`` (one ``(1, C, H, W)`` float32 array -> logits) on :func:`verification_inputs`."""
    xs = verification_inputs(input_shape, preprocess, n, seed)
    ref = model.float().eval()(xs).numpy()
    got = np.stack([np.asarray(predict(x[None].numpy())).reshape(-1) for x in xs])
    return compare(ref, got, runs_on)
