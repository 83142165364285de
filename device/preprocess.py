"""The training eval transform in NumPy/Pillow, matching torchvision's
``Resize(resize, bicubic) + CenterCrop(crop) + ToTensor() + Normalize(mean, std)`` on PIL images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .artifact import PreprocessCfg

__all__ = ["Preprocessor", "center_crop_box", "preprocess", "resized_size", "to_rgb"]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def _to_uint8(values: np.ndarray, full_scale: float) -> np.ndarray:
    return np.clip(np.rint(values.astype(np.float64) * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    """8-bit RGB view of any image: gray, palette, RGBA (alpha dropped, like training), CMYK, 16-bit, float.

    Arrays are taken as H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA); uint16 arrays are scaled from 0..65535.
    """
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype == np.uint16:
            array = _to_uint8(array, 65535)
        elif array.dtype != np.uint8:
            raise ValueError(f"unsupported frame dtype {array.dtype}: need uint8 or uint16")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or array.ndim == 3 and array.shape[2] not in (3, 4):
            raise ValueError(f"unsupported frame shape {array.shape}: need H×W, H×W×3 or H×W×4")
        image = Image.fromarray(np.ascontiguousarray(array))
    if image.mode.startswith("I;16") or image.mode == "I":
        # Pillow's convert() clips 16-bit values at 255 instead of scaling them.
        values = np.asarray(image)
        image = Image.fromarray(_to_uint8(values, 65535 if values.max(initial=0) > 255 else 255))
    elif image.mode == "F":
        image = Image.fromarray(_to_uint8(np.asarray(image), 255))
    return image if image.mode == "RGB" else image.convert("RGB")


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(width, height) with the shorter side ``short`` and the longer one truncated, as torchvision does."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def center_crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """PIL crop box (left, top, right, bottom), rounding like torchvision's ``center_crop``."""
    left = int(round((width - crop) / 2.0))
    top = int(round((height - crop) / 2.0))
    return left, top, left + crop, top + crop


class Preprocessor:
    """``cfg``'s transform, with ``(x / 255 - mean) / std`` folded into a per-channel scale and offset computed
    once: ``x * (1 / (255 * std)) - mean / std``."""

    def __init__(self, cfg: PreprocessCfg) -> None:
        self.cfg = cfg
        mean, std = np.asarray(cfg.mean, np.float64), np.asarray(cfg.std, np.float64)
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]
        self._offset = (-mean / std).astype(np.float32)[:, None, None]

    def __call__(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """An RGB image or frame as a (1, 3, crop, crop) float32 NCHW tensor."""
        cfg = self.cfg
        rgb = to_rgb(image)
        size = resized_size(*rgb.size, cfg.resize)
        if size != rgb.size:
            rgb = rgb.resize(size, _RESAMPLE[cfg.interpolation])
        rgb = rgb.crop(center_crop_box(*rgb.size, cfg.crop))
        x = np.empty((1, 3, cfg.crop, cfg.crop), np.float32)
        np.multiply(np.asarray(rgb).transpose(2, 0, 1), self._scale, out=x[0])
        x += self._offset
        return x


def preprocess(image: Image.Image | np.ndarray, cfg: PreprocessCfg) -> np.ndarray:
    """One image through ``Preprocessor(cfg)``; build a :class:`Preprocessor` once for a stream of frames."""
    return Preprocessor(cfg)(image)
