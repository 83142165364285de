"""The weights file: aligned layout, copy-on-write mapping, truncation caught."""

from __future__ import annotations

import numpy as np
import pytest
from bhvit.device.weights import ALIGNMENT, aligned_empty, map_weights, save_weights


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.standard_normal((3, 5)).astype(np.float32),
        rng.integers(0, 2**63, (7,), dtype=np.uint64),
        np.arange(3, dtype=np.int32),
        rng.standard_normal((2, 1, 9)).astype(np.float32),
    ]


def test_weights_round_trip_aligned(tmp_path):
    arrays = _arrays()
    info = save_weights(tmp_path / "weights.bin", arrays)
    assert [t.offset % ALIGNMENT for t in info.tensors] == [0] * len(arrays)
    assert (tmp_path / "weights.bin").stat().st_size == info.nbytes
    mapped = map_weights(tmp_path / "weights.bin", info)
    for got, want in zip(mapped, arrays, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape and got.ctypes.data % ALIGNMENT == 0
        np.testing.assert_array_equal(got, want)


def test_mapped_weights_are_copy_on_write(tmp_path):
    info = save_weights(tmp_path / "weights.bin", _arrays())
    before = (tmp_path / "weights.bin").read_bytes()
    map_weights(tmp_path / "weights.bin", info)[0][...] = 0  # a runtime writing a weight must not change the file
    assert (tmp_path / "weights.bin").read_bytes() == before


def test_truncated_weights_file_is_refused(tmp_path):
    info = save_weights(tmp_path / "weights.bin", _arrays())
    with open(tmp_path / "weights.bin", "r+b") as fh:
        fh.truncate(info.nbytes - 1)
    with pytest.raises(ValueError, match=f"has {info.nbytes - 1} bytes, its layout needs {info.nbytes}"):
        map_weights(tmp_path / "weights.bin", info)


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (13,)])
def test_aligned_empty_is_aligned_and_contiguous(shape):
    array = aligned_empty(shape, "float32")
    assert array.shape == shape and array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0
