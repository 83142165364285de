"""Datasets, splits, timm transforms and loaders.

Sources: Oxford-IIIT Pet through torchvision (``trainval``/``test``), any ImageFolder directory, or a generated
synthetic ImageFolder. The training pool always loses a seeded stratified validation split used for model selection;
final accuracy is measured on the test split. Images that fail to decode are skipped with a warning and counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from bhvit.models.preprocess import eval_resize
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from . import augment_compat
from .config import TrainCfg, TrainError

__all__ = [
    "Sample",
    "DataSplits",
    "ImageList",
    "load_splits",
    "stratified_split",
    "write_synthetic_folder",
    "build_transform",
    "preprocess_meta",
    "build_loader",
    "collate_skipping",
]

log = logging.getLogger(__name__)

Sample = tuple[str, int]
PETS_URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
# ``--dataset synthetic``: 10 classes, 60 training and 20 test images each, 72x72 (crops to 64 without upscaling).
SYNTHETIC = {"classes": 10, "per_class": 60, "test_per_class": 20, "size": 72}


@dataclass(frozen=True)
class DataSplits:
    """Image paths and labels of the three splits, and the class names (index = label)."""

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    class_names: list[str]


class ImageList(Dataset):
    """``(path, label)`` pairs -> ``(image tensor, label)``; an undecodable image gives ``None`` (and a warning)."""

    def __init__(self, samples: Sequence[Sample], transform: Callable):
        self.samples, self.transform = list(samples), transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            log.warning("skipping %s: cannot decode image (%s)", path, e)
            return None
        return self.transform(img), label


def collate_skipping(batch: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack the decodable samples; also return how many were skipped."""
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    return torch.stack([b[0] for b in good]), torch.tensor([b[1] for b in good]), skipped


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(keep, held_out)``: ``round(fraction * n_c)`` of each class held out (at least 1 if n_c >= 2)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keep, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = min(max(round(fraction * len(idx)), 1 if len(idx) >= 2 else 0), len(idx) - 1)
        held += idx[:n].tolist()
        keep += idx[n:].tolist()
    return sorted(keep), sorted(held)


def _pick(samples: list[Sample], idx: list[int]) -> list[Sample]:
    return [samples[i] for i in idx]


def _pets(root: Path) -> tuple[list[Sample], list[Sample], list[str]]:
    from torchvision.datasets import OxfordIIITPet

    where = (
        f"put the extracted images.tar.gz and annotations.tar.gz from {PETS_URL} so that "
        f"{root / 'oxford-iiit-pet' / 'images'}/*.jpg and "
        f"{root / 'oxford-iiit-pet' / 'annotations'}/{{trainval,test}}.txt exist"
    )
    base = root / "oxford-iiit-pet"
    if not ((base / "images").is_dir() and (base / "annotations").is_dir()):
        log.info("Oxford-IIIT Pet not found in %s; downloading", root)
        try:
            OxfordIIITPet(root, download=True)
        except Exception as e:  # any network or archive failure ends the same way
            raise TrainError(f"could not download Oxford-IIIT Pet ({e}); {where}") from None
    try:
        splits = {s: OxfordIIITPet(root, split=s) for s in ("trainval", "test")}
    except (OSError, RuntimeError, ValueError) as e:
        raise TrainError(f"Oxford-IIIT Pet in {root} is incomplete or corrupt ({e}); {where}") from None
    lists = {s: [(str(p), int(y)) for p, y in zip(d._images, d._labels)] for s, d in splits.items()}
    return lists["trainval"], lists["test"], list(splits["trainval"].classes)


def _folder(root: Path, fraction: float, seed: int) -> tuple[list[Sample], list[Sample], list[str]]:
    from torchvision.datasets import ImageFolder

    layout = (
        f"expected {root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg (or val/), "
        f"or class folders directly in {root}"
    )
    if not root.is_dir():
        raise TrainError(f"data dir {root} does not exist; {layout}")
    parts = [root / "train", next((root / d for d in ("test", "val") if (root / d).is_dir()), None)]
    try:
        if parts[0].is_dir() and parts[1] is not None:
            train, test = ImageFolder(str(parts[0])), ImageFolder(str(parts[1]))
            if train.classes != test.classes:
                raise TrainError(f"{parts[0]} and {parts[1]} have different class folders")
            return train.samples, test.samples, train.classes
        if parts[0].is_dir():
            raise TrainError(f"{parts[0]} exists but there is no test/ or val/ beside it; {layout}")
        pool = ImageFolder(str(root))
    except FileNotFoundError as e:
        raise TrainError(f"no images in {root} ({e}); {layout}") from None
    keep, test = stratified_split([y for _, y in pool.samples], fraction, seed + 1)
    return _pick(pool.samples, keep), _pick(pool.samples, test), pool.classes


def write_synthetic_folder(
    root: Path, classes: int, per_class: int, test_per_class: int, size: int, seed: int = 0
) -> Path:
    """Write a seeded, class-separable ImageFolder (``root/train``, ``root/test``) of PNGs and return ``root``.

    Class ``k`` is a colour field of hue ``k/classes`` with stripes at angle ``180*k/classes`` degrees, a random
    phase and frequency, and pixel noise: easy to tell apart, not trivially constant.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for split, n in (("train", per_class), ("test", test_per_class)):
        for k in range(classes):
            folder = root / split / f"class_{k:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            angle, hue = math.pi * k / classes, k / classes
            colour = np.array([0.5 + 0.5 * math.cos(2 * math.pi * (hue + s / 3)) for s in range(3)])
            for i in range(n):
                freq, phase = rng.uniform(3, 6), rng.uniform(0, 2 * math.pi)
                stripes = np.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
                img = colour * (0.6 + 0.3 * stripes[..., None]) + rng.normal(0, 0.08, (size, size, 3))
                Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root


def load_splits(cfg: TrainCfg) -> DataSplits:
    """Resolve ``cfg.dataset`` / ``cfg.data_dir`` into train / val / test lists (val is carved out of train)."""
    root = Path(cfg.data_dir)
    if cfg.dataset == "pets":
        pool, test, names = _pets(root)
    else:
        if cfg.dataset == "synthetic" and not (root / "train").is_dir():
            log.info("writing the synthetic dataset to %s", root)
            write_synthetic_folder(root, **SYNTHETIC, seed=cfg.split_seed)
        pool, test, names = _folder(root, cfg.val_fraction, cfg.split_seed)
    keep, val = stratified_split([y for _, y in pool], cfg.val_fraction, cfg.split_seed)
    splits = DataSplits(_pick(pool, keep), _pick(pool, val), test, list(names))
    if not splits.val or not splits.test:
        raise TrainError(
            f"{root} has too few images for a validation and a test split "
            f"({len(pool)} training, {len(test)} test images)"
        )
    return splits


def build_transform(cfg: TrainCfg, train: bool) -> Callable:
    """timm's training augmentation (RandAugment, colour jitter, random erasing) or eval resize + centre crop."""
    if train:
        transform = create_transform(
            cfg.img_size,
            is_training=True,
            auto_augment=cfg.aa or None,
            color_jitter=cfg.color_jitter,
            interpolation=cfg.interpolation,
            re_prob=cfg.reprob,
            re_mode=cfg.remode,
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
        )
        return augment_compat.patch_posterize(transform)
    return create_transform(
        cfg.img_size,
        is_training=False,
        interpolation=cfg.interpolation,
        crop_pct=cfg.crop_pct,
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )


def preprocess_meta(cfg: TrainCfg) -> dict:
    """What a device must do to an image before the model: stored in every checkpoint."""
    return {
        "input_size": [3, cfg.img_size, cfg.img_size],
        "resize": eval_resize(cfg.img_size, cfg.crop_pct),
        "crop": cfg.img_size,
        "interpolation": cfg.interpolation,
        "mean": list(IMAGENET_DEFAULT_MEAN),
        "std": list(IMAGENET_DEFAULT_STD),
    }


def build_loader(samples: list[Sample], cfg: TrainCfg, train: bool, rank: int = 0, world: int = 1) -> DataLoader:
    """Training: seeded shuffling shard per rank (reshuffled by ``sampler.set_epoch``), full batches only.

    Evaluation: rank ``r`` reads samples ``r, r + world, ...`` (no padding, so counts summed over ranks are exact).
    """
    dataset = ImageList(samples, build_transform(cfg, train))
    if train:
        per_rank = len(samples) // world
        if per_rank < cfg.batch_size:
            raise TrainError(
                f"the training split has {len(samples)} images, fewer than one batch of "
                f"{cfg.batch_size} per process; lower --batch-size"
            )
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    else:
        sampler = list(range(rank, len(samples), world))
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate_skipping,
        drop_last=train,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.workers > 0,
    )
