"""Schedule of the FP32 stencil add (:mod:`..compute.stencil_add`).

One parallel loop over (channel, row), rows inner, so each thread takes a range of channels, as the NCHW kernels
around it do (the next block's BatchNorm, packs, pools). Ordered by rows instead, each thread took a range of rows
and the next kernel read half of its input back from the other core's cache: at two threads that cost more than the
stencil itself on the 7x7 and 14x14 maps (the whole model ran 8-10% slower). The token term (``bias + token_scale *
tokens``, the transposing read) runs first, as a parallel pass of its own into a map-layout buffer, in tiles of
channels x one vector of positions (:func:`token_tile`) loaded as contiguous channel runs and transposed in
registers by :mod:`.register_transpose`; the sum then reads it along its rows. Read inside the sum, each vector's
lanes were loaded one by one (w=3 stencils: 56x56 0.77x, 28x28 0.85x, 14x14 0.94x the time; a 7x7 map, 49 positions,
has no tile: there each channel gathers its column of tokens inside the sum, and the next channel reads the same
cache lines). Per row, the row with its wrapped border goes into a stack buffer (its middle part copied as one long
vector, the ``2 R`` wrapped columns scalar), then the sum runs as vectors along the row: the whole row where it has
at most four vectors' worth of float32 lanes, else the largest power-of-two divisor of the width up to one vector.
Where a channel's whole map with its borders fits the stack buffer (7x7 and 14x14 maps), all its rows are copied
first: the horizontal taps read the buffer at offsets that straddle the stores that just wrote it, and a load
straddling stores still in flight waits for them to complete (no store-to-load forwarding); rows copied long before
are read at cache speed (stencil alone, one thread: 7x7 0.71-0.75x, 14x14 0.83-0.89x the time; on 28x28 and 56x56
maps, copied in blocks of rows, it was 1.1-1.6x slower, so those keep the row loop).
"""

from __future__ import annotations

from typing import NamedTuple

from tvm import IRModule, tirx
from tvm.s_tir import Schedule
from tvm.target import Target

from ..blocks import OUT, ROW, TOKEN_TERM
from ..params import StencilParams
from . import select
from .generic import FLOAT_BYTES, STACK_ALLOCA_BYTES, partition, pow2_divisor, vectorize_unroll
from .register_transpose import ANNOTATION, CACHE_LINE_BYTES, tiles_per_line

__all__ = ["row_vector", "token_tile", "schedule"]

# the row (W + 2R floats) or map buffer is a stack array while under TVM's stack-allocation limit
MAX_BUFFER_FLOATS = STACK_ALLOCA_BYTES // FLOAT_BYTES


def row_vector(p: StencilParams, target: Target) -> int:
    """Lanes of the vectors along a row for ``target``."""
    lanes = select(target).float_lanes
    return p.width if p.width <= 4 * lanes else pow2_divisor(p.width, lanes)


def schedule(func: tirx.PrimFunc, p: StencilParams, target: Target) -> IRModule:
    """Schedule a stencil-add PrimFunc built from ``p``."""
    sch = Schedule(func)
    out, row, term = sch.get_sblock(OUT), sch.get_sblock(ROW), sch.get_sblock(TOKEN_TERM)
    tile = token_tile(p, target)
    if tile is None:
        sch.compute_inline(term)
    else:
        _schedule_token_term(sch, term, tile)
    b, c, h, w = sch.get_loops(out)
    whole_map = p.height * (p.width + 2 * p.reach) < MAX_BUFFER_FLOATS
    tasks = sch.fuse(b, c) if whole_map else sch.fuse(b, c, h)
    vl = row_vector(p, target)
    if vl > 1:  # the whole row as one vector, or pieces of vl lanes (unrolled)
        vectorize_unroll(sch, [w] if int(sch.get(w).extent) == vl else sch.split(w, [None, vl]))
    sch.parallel(tasks)
    sch.compute_at(row, tasks)  # a stack buffer while under TVM's 1 KiB alloca limit
    j = sch.get_loops(row)[-1]
    middle = partition(sch, j, [p.reach, p.reach + p.width])[1] if p.reach else j
    if p.width + 2 * p.reach < MAX_BUFFER_FLOATS:  # a plain copy: LLVM splits one long vector into registers
        sch.vectorize(middle)
    return sch.mod


class TokenTile(NamedTuple):
    rows: int  # channels
    lanes: int  # positions (one vector)


def token_tile(p: StencilParams, target: Target) -> TokenTile | None:
    """The channels x positions tile in which the token term is transposed into the map's layout, or None (the term
    is then computed inside the sum, its tokens gathered): ``lanes`` the largest power of two dividing the positions
    up to a vector, ``rows`` the largest power of two up to ``lanes`` dividing the channels."""
    lanes = pow2_divisor(p.height * p.width, select(target).float_lanes)
    rows = pow2_divisor(p.channels, lanes)
    return TokenTile(rows, lanes) if rows > 1 else None


def _schedule_token_term(sch: Schedule, term, tile: TokenTile) -> None:
    """The token term as a pass of its own over tiles of ``rows`` channels x ``lanes`` positions, each loaded as
    contiguous channel runs and transposed in registers (the loop over the rows marked for
    :mod:`.register_transpose`); the tiles that share a cache line of tokens run one after another."""
    b, c, h, w = sch.get_loops(term)
    per_line = tiles_per_line(int(sch.get(c).extent) // tile.rows, tile.rows, CACHE_LINE_BYTES // FLOAT_BYTES)
    lines, group, rows = sch.split(c, [None, per_line, tile.rows])
    positions, lanes = sch.split(sch.fuse(h, w), [None, tile.lanes])
    sch.reorder(b, lines, positions, group, rows, lanes)
    sch.parallel(sch.fuse(b, lines, positions))
    sch.annotate(rows, ANNOTATION, 1)
    sch.vectorize(lanes)
