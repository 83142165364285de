"""Keep timm's RandAugment working on Pillow >= 13.

With a magnitude std (``rand-m9-mstd0.5-inc1``) timm's ``PosterizeIncreasing`` can ask for 0 bits; Pillow 13's
``ImageOps.posterize`` rejects bits outside 1..8 where older Pillow returned a black image, so training crashed at
random. :func:`install` maps timm's posterize ops to a version that keeps the old meaning of ``bits <= 0``.
"""

from __future__ import annotations

from PIL import Image, ImageOps
from timm.data import auto_augment

__all__ = ["posterize", "install"]


def posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize with ``bits_to_keep <= 0`` giving black (Pillow < 13 behaviour) instead of an error."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def install() -> None:
    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = posterize
