"""The weights file of a TVM artifact: the model's tensors back to back, each 64-byte aligned.

``bhvit-compile`` lifts the weights out of the library (``main`` takes ``(x, *weights)``) so that the device maps
them straight from the file, copy-on-write: no second copy in memory and no load-time spike. The file's layout
(dtype, shape and offset of each tensor, in ``main``'s parameter order) is recorded in ``metadata.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ALIGNMENT", "TensorEntry", "WeightsInfo", "aligned_empty", "map_weights", "save_weights"]

ALIGNMENT = 64  # TVM assumes 64-byte aligned buffers (kAllocAlignment) and may emit aligned vector loads


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the weights file."""

    dtype: str
    shape: tuple[int, ...]
    offset: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class WeightsInfo:
    """The weights file of an artifact and its layout."""

    file: str
    tensors: tuple[TensorEntry, ...]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightsInfo:
        return cls(data["file"], tuple(TensorEntry(**t) for t in data["tensors"]))

    @property
    def nbytes(self) -> int:
        """The file size the layout needs."""
        return max((t.offset + t.nbytes for t in self.tensors), default=0)


def _aligned(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def save_weights(path: Path, arrays: Sequence[np.ndarray]) -> WeightsInfo:
    """Write ``arrays`` to ``path``, each at a 64-byte aligned offset; return the layout."""
    entries, offset = [], 0
    with open(path, "wb") as fh:
        for array in arrays:
            array = np.ascontiguousarray(array)
            fh.write(b"\0" * (offset - fh.tell()))
            fh.write(array.tobytes())
            entries.append(TensorEntry(array.dtype.name, array.shape, offset))
            offset = _aligned(offset + array.nbytes)
    return WeightsInfo(path.name, tuple(entries))


def map_weights(path: Path, info: WeightsInfo) -> list[np.ndarray]:
    """The tensors of ``path`` as copy-on-write memory maps (pages are read on first use, never copied).

    Raises ValueError when the file is shorter than the layout needs.
    """
    size = path.stat().st_size
    if size < info.nbytes:
        raise ValueError(f"{path}: weights file has {size} bytes, its layout needs {info.nbytes}")
    if not info.tensors:
        return []
    mapped = np.memmap(path, dtype=np.uint8, mode="c", shape=(info.nbytes,))
    return [mapped[t.offset : t.offset + t.nbytes].view(t.dtype).reshape(t.shape) for t in info.tensors]


def aligned_empty(shape: Sequence[int], dtype: str = "float32") -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    nbytes = prod(shape) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(tuple(shape))
