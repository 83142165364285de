"""Model sources: a checkpoint's sha256 is recorded, so a retrained file at the same path is told apart."""

from __future__ import annotations

import hashlib

import torch
from bhvit.compile.source import from_checkpoint, random_init
from bhvit.models import build_model
from bhvit.train.checkpoint import save_checkpoint


def _save(path, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_model("test_bhvit", num_classes=3)
    meta = {
        "family": "bhvit",
        "model": "test_bhvit",
        "config": model.cfg.to_dict(),
        "class_names": ["a", "b", "c"],
        "preprocess": {"input_size": [3, 64, 64], "resize": 73, "crop": 64},
    }
    save_checkpoint(path, model, meta)


def test_checkpoint_source_records_the_file_sha256(tmp_path):
    path = tmp_path / "best.safetensors"
    _save(path, seed=0)
    first = from_checkpoint(path)
    assert first.origin == str(path)
    assert first.extra["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    _save(path, seed=1)  # retrained, same path
    assert from_checkpoint(path).extra["source_sha256"] != first.extra["source_sha256"]
    assert "source_sha256" not in random_init("test_bhvit").extra
