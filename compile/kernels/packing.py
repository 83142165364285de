"""Compile-time (numpy) packing of ±1 weights into the kernels' word layouts."""

from __future__ import annotations

import numpy as np

from .params import WORD_BITS, Conv2dParams, words

__all__ = ["BORDER_DTYPE", "pack_bits", "dense_weight", "conv_weight", "conv_border"]

BORDER_DTYPE = np.int16  # |correction| <= Cg * KH * KW: half the bytes of int32 for every real BHViT width


def pack_bits(bits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pack a boolean axis into little-endian uint64 words (bit b of word w = element 64w + b).

    The axis keeps its position and becomes ceil(len / 64) long; pad bits are 0.
    """
    bits = np.moveaxis(np.asarray(bits, dtype=bool), axis, -1)
    n = bits.shape[-1]
    padded = np.zeros((*bits.shape[:-1], words(n) * WORD_BITS), dtype=bool)
    padded[..., :n] = bits
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return np.moveaxis(np.ascontiguousarray(packed).view(np.uint64), -1, axis)


def _signs_to_bits(weight_signs: np.ndarray) -> np.ndarray:
    w = np.asarray(weight_signs)
    if not np.all(np.abs(w) == 1):
        raise ValueError("weight_signs must hold only +1 and -1")
    return w > 0


def dense_weight(weight_signs: np.ndarray) -> np.ndarray:
    """(N, K) ±1 -> (Kw, N) uint64, N contiguous."""
    return np.ascontiguousarray(pack_bits(_signs_to_bits(weight_signs), axis=1).T)


def conv_weight(weight_signs: np.ndarray, groups: int) -> np.ndarray:
    """(O, Cg, KH, KW) ±1 -> (G, Kw, Og) uint64 in the conv's tap-packed order.

    Bit ``t * Cg + c`` (t = ky * KW + kx) of a group's ``KH * KW * Cg`` bits holds channel c of
    tap t; output channel within the group contiguous.
    """
    o, cg, kh, kw = weight_signs.shape
    bits = _signs_to_bits(weight_signs).reshape(groups, o // groups, cg, kh * kw)
    packed = pack_bits(bits.transpose(0, 1, 3, 2).reshape(groups, o // groups, kh * kw * cg), axis=2)
    return np.ascontiguousarray(packed.transpose(0, 2, 1))


def conv_border(p: Conv2dParams, weight_signs: np.ndarray, layout: str = "NCHW") -> tuple[np.ndarray, np.ndarray]:
    """Zero-padding correction: ``row_class`` (Ho,) and ``border`` (RC, G, Og, Wo) where the conv tiles rows
    (:meth:`~.params.Conv2dParams.tiles_rows`), else (RC, Wo, G, Og).

    ``border[r, ..., x]`` is ``p.taps`` plus the sum of an output channel's weights over the taps that fall in the
    padding for outputs of row class r in column x: the whole constant term of the dot product there (see
    ``compute.bconv2d``), added here once instead of per output at run time.
    """
    (row_class, row_ok), (col_class, col_ok) = (p.border_classes(axis) for axis in (0, 1))
    padded = ~(np.array(row_ok)[:, None, :, None] & np.array(col_ok)[None, :, None, :])  # (RC, CC, KH, KW)
    tap_sums = np.asarray(weight_signs, dtype=np.int64).sum(axis=1)  # (O, KH, KW)
    border = p.taps + np.einsum("rcij,oij->rco", padded.astype(np.int64), tap_sums)[:, col_class]  # (RC, Wo, O)
    border = border.reshape(*border.shape[:2], p.groups, p.out_per_group)
    if p.tiles_rows(layout):
        border = border.transpose(0, 2, 3, 1)
    if np.abs(border).max(initial=0) > np.iinfo(BORDER_DTYPE).max:
        raise ValueError(f"border corrections of {p} do not fit {BORDER_DTYPE.__name__}")
    return np.asarray(row_class, np.int32), np.ascontiguousarray(border, dtype=BORDER_DTYPE)
