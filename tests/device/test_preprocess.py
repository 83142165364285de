"""Preprocessing matches torchvision's eval transform on real photos and copes with unusual images."""

from __future__ import annotations

import numpy as np
import pytest
from bhvit.device.artifact import PreprocessCfg
from bhvit.device.preprocess import Preprocessor, center_crop_box, preprocess, resized_size, to_rgb
from bhvit.device.sources import SAMPLES_DIR, load_image
from PIL import Image

CFG = PreprocessCfg()


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut"])
def test_preprocess_matches_torchvision_on_real_photos(name):
    transforms = pytest.importorskip("torchvision.transforms", reason="reference transform needs torchvision")
    from skimage import data

    image = Image.fromarray(getattr(data, name)())
    reference = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(CFG.mean, CFG.std),
        ]
    )(image).numpy()[None]
    ours = preprocess(image, CFG)
    assert ours.shape == (1, 3, 224, 224) and ours.dtype == np.float32 and ours.flags.c_contiguous
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def _photo(kind: str, tmp_path) -> tuple[object, str]:
    """(what the device is given, the file training reads): small/large JPEG and PNG files, or a camera array."""
    photo = Image.open(SAMPLES_DIR / "astronaut.png").convert("RGB")  # 512x512
    if kind == "large-jpeg":  # a camera-sized photo, with texture so that JPEG has detail to lose
        photo = photo.resize((3200, 2134), Image.Resampling.BICUBIC)
        noise = np.random.default_rng(0).integers(-20, 21, (2134, 3200, 3))
        photo = Image.fromarray(np.clip(np.asarray(photo, np.int16) + noise, 0, 255).astype(np.uint8))
    elif kind == "small-jpeg":
        photo = photo.resize((300, 200), Image.Resampling.BICUBIC)
    path = tmp_path / ("photo.png" if kind in ("png", "camera") else "photo.jpg")
    photo.save(path, quality=90)
    if kind == "camera":  # a frame as picamera2/OpenCV deliver it (after BGR -> RGB): an HxWx3 uint8 array
        return np.asarray(Image.open(path).convert("RGB")), str(path)
    return load_image(path), str(path)


@pytest.mark.parametrize("kind", ["small-jpeg", "large-jpeg", "png", "camera"])
@pytest.mark.parametrize("img_size", [224, 64])
def test_device_input_equals_the_training_eval_transform(kind, img_size, tmp_path):
    """The device's model input is what ``bhvit-train`` evaluated on: train/data.py's own transform of the file."""
    pytest.importorskip("timm", reason="the training transform needs the train extra")
    from bhvit.train.config import TrainCfg
    from bhvit.train.data import ImageList, build_transform, preprocess_meta

    train_cfg = TrainCfg(img_size=img_size)
    meta = preprocess_meta(train_cfg)  # what the checkpoint, and so the artifact, records
    cfg = PreprocessCfg(**{**meta, "input_size": meta["input_size"][-1]})
    given, path = _photo(kind, tmp_path)
    reference, _ = ImageList([(path, 0)], build_transform(train_cfg, train=False))[0]
    ours = Preprocessor(cfg)(given)
    assert ours.shape == (1, *reference.shape)
    np.testing.assert_allclose(ours, reference.numpy()[None], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [CFG, PreprocessCfg(input_size=64, resize=73, crop=64, mean=(0.5, 0.25, 0.0), std=(0.5, 0.125, 2.0))],
    ids=["imagenet", "custom"],
)
def test_folded_normalisation_equals_the_straightforward_formula(cfg):
    """Every 0..255 level in every channel, no resize (the image is resize x resize), so only the crop applies."""
    rgb = np.random.default_rng(0).integers(0, 256, (cfg.resize, cfg.resize, 3), dtype=np.uint8)
    left, top, right, bottom = center_crop_box(cfg.resize, cfg.resize, cfg.crop)
    rgb[top : top + 16, left : left + 16] = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    crop = rgb[top:bottom, left:right]
    reference = ((crop / 255.0 - np.asarray(cfg.mean)) / np.asarray(cfg.std)).transpose(2, 0, 1)[None]
    ours = Preprocessor(cfg)(rgb)
    assert ours.shape == (1, 3, cfg.crop, cfg.crop) and ours.dtype == np.float32 and ours.flags.c_contiguous
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(preprocess(rgb, cfg), ours)


def test_preprocess_of_rgb_array_equals_pil_image():
    rgb = np.asarray(Image.open(SAMPLES_DIR / "coffee.png").convert("RGB"))
    np.testing.assert_array_equal(preprocess(rgb, CFG), preprocess(Image.fromarray(rgb), CFG))


@pytest.mark.parametrize(
    "width, height, expected",
    [(451, 300, (384, 256)), (300, 451, (256, 384)), (256, 256, (256, 256)), (1000, 257, (996, 256))],
)
def test_resized_size_truncates_long_side_like_torchvision(width, height, expected):
    assert resized_size(width, height, 256) == expected


def test_center_crop_rounds_half_to_even_like_torchvision():
    assert center_crop_box(227, 225, 224) == (2, 0, 226, 224)  # round(1.5) = 2, round(0.5) = 0


def _gradient(mode: str, dtype=np.uint8, scale: int = 255, size=(60, 80)) -> Image.Image:
    ramp = np.linspace(0, scale, size[0] * size[1]).reshape(size).astype(dtype)
    return Image.fromarray(ramp, mode) if mode != "auto" else Image.fromarray(ramp)


@pytest.mark.parametrize(
    "image",
    [
        _gradient("L"),
        Image.new("RGBA", (80, 60), (10, 200, 30, 0)),
        Image.new("P", (80, 60), 3),
        Image.new("CMYK", (80, 60), (0, 255, 0, 0)),
        Image.new("1", (80, 60), 1),
        _gradient("auto", np.uint16, 65535),
        _gradient("auto", np.float32, 255.0),
    ],
    ids=["gray", "rgba", "palette", "cmyk", "bilevel", "gray16", "float"],
)
def test_preprocess_handles_any_image_mode(image):
    x = preprocess(image, CFG)
    assert x.shape == (1, 3, 224, 224) and np.isfinite(x).all()
    pixels = x * np.asarray(CFG.std, np.float32)[:, None, None] + np.asarray(CFG.mean, np.float32)[:, None, None]
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_sixteen_bit_gray_is_scaled_not_clipped():
    image = _gradient("auto", np.uint16, 65535)
    assert image.mode.startswith("I;16")
    rgb = np.asarray(to_rgb(image))
    assert rgb.max() == 255 and 100 < rgb.mean() < 155  # clipping would give nearly all 255


def test_rgba_alpha_is_dropped_like_training():
    assert np.asarray(to_rgb(Image.new("RGBA", (4, 4), (10, 200, 30, 0))))[0, 0].tolist() == [10, 200, 30]


def test_to_rgb_rejects_unsupported_arrays():
    with pytest.raises(ValueError, match="frame shape"):
        to_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        to_rgb(np.zeros((4, 4, 3), np.int64))
