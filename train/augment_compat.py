"""Keep timm's RandAugment working on Pillow >= 13.

With a magnitude std (``rand-m9-mstd0.5-inc1``) timm's ``PosterizeIncreasing`` can ask for 0 bits; Pillow 13's
``ImageOps.posterize`` rejects bits outside 1..8 where older Pillow returned a black image, so training crashed at
random. :func:`patch_posterize` gives the posterize ops of one transform a version that keeps the old meaning of
``bits <= 0``; timm itself is left unchanged.
"""

from __future__ import annotations

from PIL import Image, ImageOps

__all__ = ["posterize", "patch_posterize"]

_POSTERIZE_OPS = ("Posterize", "PosterizeIncreasing", "PosterizeOriginal")


def posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize with ``bits_to_keep <= 0`` giving black (Pillow < 13 behaviour) instead of an error."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def _augment_ops(transform):
    """timm ``AugmentOp``s inside a ``Compose`` of RandAugment / AutoAugment / AugMix transforms."""
    for t in getattr(transform, "transforms", [transform]):
        yield from getattr(t, "ops", ())
        for sub_policy in getattr(t, "policy", ()):
            yield from sub_policy


def patch_posterize(transform):
    """Point every posterize op of ``transform`` at :func:`posterize`; returns ``transform``."""
    for op in _augment_ops(transform):
        if getattr(op, "name", None) in _POSTERIZE_OPS:
            op.aug_fn = posterize
    return transform
