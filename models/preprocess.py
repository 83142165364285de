"""The eval transform a model expects: resize the shorter side, then centre-crop ``img_size`` (timm's rule)."""

from __future__ import annotations

import math

from timm.data import DEFAULT_CROP_PCT

__all__ = ["DEFAULT_CROP_PCT", "eval_resize"]


def eval_resize(img_size: int, crop_pct: float = DEFAULT_CROP_PCT) -> int:
    """The shorter-side size to resize to, so that the ``img_size`` centre crop keeps ``crop_pct`` (224 -> 256)."""
    return math.floor(img_size / crop_pct)
