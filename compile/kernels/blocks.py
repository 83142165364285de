"""Names and annotations by which the schedules find the blocks of the binary computes.

Defined once here and used by both sides, so renaming a block, or a compute's lambda argument, cannot silently
detach a schedule: the schedules look blocks up by these names and the register tile's axes by the
:data:`TILE_AXES_ATTR` annotation (positions), never by TE's iterator names.
"""

from __future__ import annotations

__all__ = [
    "ACC",
    "OUT",
    "PACK",
    "POOL",
    "PAD",
    "TRANSPOSE",
    "GATHER",
    "ROWSUM",
    "ROW",
    "TOKEN_TERM",
    "WORD_AXIS_ATTR",
    "TILE_AXES_ATTR",
    "tile_axes",
]

ACC = "acc"  # int64 popcount sums of a GEMM
OUT = "out"  # the GEMM's float32 epilogue
PACK = "pack"  # float -> uint64 sign words
POOL = "pool"  # group means written beside a pack
PAD = "pad"  # bordered copy: zeros before a conv's gather, the pool's identity before a padded pool
TRANSPOSE = "transpose"  # an operand copied with its word axis first, so the GEMM's vectors run along the other axis
GATHER = "gather"  # bit-level im2col
ROWSUM = "rowsum"  # popcount of the attention masks
ROW = "row"  # a map row with its circular border (the stencil add)
TOKEN_TERM = "token_term"  # the stencil add's scaled tokens plus bias, channel-major

WORD_AXIS_ATTR = "bhvit.word_axis"  # block annotation: position of the packed word axis
TILE_AXES_ATTR = "bhvit.tile_axes"  # block annotation: positions of the tile's row (m) and column (n) axes


def tile_axes(m: int, n: int) -> dict[str, list[int]]:
    """``te.compute`` attrs marking axis ``m`` as the tile's rows and ``n`` as its (vectorised) columns."""
    return {TILE_AXES_ATTR: [m, n]}
