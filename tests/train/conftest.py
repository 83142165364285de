"""Shared fixtures for the training tests: a tiny generated ImageFolder and the common CLI arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bhvit.train.data import write_synthetic_folder

# 3 classes x 12 training images (33 train + 3 val after the 10% split) and 3 x 4 test images, 64x64.
CLASSES, PER_CLASS, TEST_PER_CLASS = 3, 12, 4


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models on a shared 2-core machine run fastest single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    root = write_synthetic_folder(
        tmp_path_factory.mktemp("data"),
        classes=CLASSES,
        per_class=PER_CLASS,
        test_per_class=TEST_PER_CLASS,
        size=64,
        seed=0,
    )
    (root / "test" / "class_00" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    return root


@pytest.fixture(scope="session")
def train_args(tiny_data):
    """``train_args(out, *extra)``: CLI arguments of a seconds-long CPU run of ``test_bhvit`` without a teacher."""

    def args(out: Path, *extra: str) -> list[str]:
        return [
            "--model",
            "test_bhvit",
            "--dataset",
            "folder",
            "--data-dir",
            str(tiny_data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--workers",
            "0",
            "--warmup-epochs",
            "0",
            "--no-distill",
            "--recalibrate-batches",
            "2",
            "--device",
            "cpu",
            "-q",
            *extra,
        ]

    return args
