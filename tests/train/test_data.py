"""Data: splits, folder/Pets resolution and their errors, undecodable images."""

from __future__ import annotations

from collections import Counter
from urllib.error import URLError

import pytest
import torch
from bhvit.train.config import TrainCfg, TrainError
from bhvit.train.data import (
    ImageList,
    build_transform,
    collate_skipping,
    load_splits,
    preprocess_meta,
    stratified_split,
    write_synthetic_folder,
)
from PIL import Image


def test_stratified_split_is_seeded_and_per_class():
    labels = [0] * 30 + [1] * 10 + [2] * 20
    keep, held = stratified_split(labels, 0.1, seed=0)
    assert Counter(labels[i] for i in held) == {0: 3, 1: 1, 2: 2}
    assert sorted(keep + held) == list(range(60))
    assert stratified_split(labels, 0.1, seed=0) == (keep, held)
    assert stratified_split(labels, 0.1, seed=1) != (keep, held)


def test_load_splits_folder_uses_train_and_test_dirs(tiny_data):
    splits = load_splits(TrainCfg(dataset="folder", data_dir=tiny_data))
    assert splits.class_names == ["class_00", "class_01", "class_02"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (33, 3, 13)
    assert not {p for p, _ in splits.val} & {p for p, _ in splits.train}


def test_load_splits_flat_folder_gets_seeded_test_split(tmp_path):
    write_synthetic_folder(tmp_path / "w", classes=2, per_class=20, test_per_class=0, size=16)
    flat = tmp_path / "w" / "train"
    a = load_splits(TrainCfg(dataset="folder", data_dir=flat))
    assert (len(a.train), len(a.val), len(a.test)) == (32, 4, 4)
    assert a == load_splits(TrainCfg(dataset="folder", data_dir=flat))


@pytest.mark.parametrize("layout", ["missing", "empty", "train_only"])
def test_load_splits_folder_bad_dir_says_what_layout_is_expected(tmp_path, layout):
    root = tmp_path / "d"
    if layout != "missing":
        root.mkdir()
    if layout == "train_only":
        (root / "train" / "a").mkdir(parents=True)
    with pytest.raises(TrainError, match="expected .*train/<class>"):
        load_splits(TrainCfg(dataset="folder", data_dir=root))


def test_load_splits_pets_offline_says_where_to_put_files(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "OxfordIIITPet", offline)
    with pytest.raises(TrainError, match=r"could not download.*oxford-iiit-pet/annotations.*trainval,test"):
        load_splits(TrainCfg(dataset="pets", data_dir=tmp_path))


def test_load_splits_pets_corrupt_copy_is_reported(tmp_path):
    (tmp_path / "oxford-iiit-pet" / "images").mkdir(parents=True)
    (tmp_path / "oxford-iiit-pet" / "annotations").mkdir()
    with pytest.raises(TrainError, match="incomplete or corrupt"):
        load_splits(TrainCfg(dataset="pets", data_dir=tmp_path))


def test_load_splits_synthetic_writes_dataset_once(tmp_path, monkeypatch):
    import bhvit.train.data as data

    monkeypatch.setattr(data, "SYNTHETIC", {"classes": 2, "per_class": 10, "test_per_class": 2, "size": 16})
    splits = load_splits(TrainCfg(dataset="synthetic", data_dir=tmp_path / "syn"))
    assert len(splits.class_names) == 2 and len(splits.test) == 4
    stamp = (tmp_path / "syn" / "train" / "class_00" / "0000.png").stat().st_mtime_ns
    load_splits(TrainCfg(dataset="synthetic", data_dir=tmp_path / "syn"))
    assert (tmp_path / "syn" / "train" / "class_00" / "0000.png").stat().st_mtime_ns == stamp


def test_image_list_skips_undecodable_image_and_counts_it(tiny_data, caplog):
    cfg = TrainCfg(img_size=64)
    good = str(next((tiny_data / "test" / "class_01").glob("*.png")))
    ds = ImageList([(good, 1), (str(tiny_data / "test" / "class_00" / "broken.png"), 0)], build_transform(cfg, False))
    with caplog.at_level("WARNING"):
        images, labels, skipped = collate_skipping([ds[0], ds[1]])
    assert images.shape == (1, 3, 64, 64) and labels.tolist() == [1] and skipped == 1
    assert "broken.png" in caplog.text


def test_preprocess_meta_matches_timm_eval_transform():
    cfg = TrainCfg(img_size=224)
    meta = preprocess_meta(cfg)
    assert meta["resize"] == 256 and meta["crop"] == 224 and meta["interpolation"] == "bicubic"
    assert build_transform(cfg, False)(Image.new("RGB", (300, 400))).shape == (3, 224, 224)
    assert torch.allclose(torch.tensor(meta["mean"]), torch.tensor([0.485, 0.456, 0.406]))


def test_train_transform_posterize_ops_accept_zero_bits_and_timm_is_untouched():
    from bhvit.train.augment_compat import posterize
    from timm.data import auto_augment

    before = dict(auto_augment.NAME_TO_OP)
    transform = build_transform(TrainCfg(img_size=64, aa="rand-m9-mstd0.5-inc1"), train=True)
    ops = [op for t in transform.transforms for op in getattr(t, "ops", ())]
    patched = [op for op in ops if op.name.startswith("Posterize")]
    assert patched and all(op.aug_fn is posterize for op in patched)
    assert auto_augment.NAME_TO_OP == before  # no global monkeypatch
    img = Image.new("RGB", (8, 8), (200, 200, 200))
    assert patched[0].aug_fn(img, 0).getextrema() == ((0, 0), (0, 0), (0, 0))  # Pillow >= 13 would raise for 0 bits
    assert patched[0].aug_fn(img, 8).getextrema()[0] == (200, 200)
