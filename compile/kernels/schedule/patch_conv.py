"""Schedule of the FP32 patch conv (:mod:`..compute.patch_conv`).

The output tile is ``MR`` patches of one patch row (``MR`` divides the row) by ``NR x VL`` float32 channels,
summed in a stack tile (registers) over the whole reduction ``(c, kh, kw)``: per step one weight panel row (``NR``
contiguous vectors) and ``MR`` broadcast map values (read in place, strided, so no patch copy exists). The tile is
then written transposed into the NCHW output (``MR`` consecutive pixels per channel, unrolled). The parallel loop
runs over ``(batch, panel, patch row, row tile)`` with the panel outermost, so each thread keeps one weight panel
hot in its cache across its row tiles.
"""

from __future__ import annotations

from dataclasses import replace

from tvm import IRModule, tirx
from tvm.s_tir import Schedule
from tvm.target import Target

from ..blocks import ACC, OUT
from ..params import PatchConvParams
from . import select
from .generic import FLOAT_BYTES, Tile, choose_tile, vectorize_unroll

__all__ = ["patch_tile", "schedule"]


def patch_tile(p: PatchConvParams, target: Target) -> Tile:
    """The register tile for ``target``: the binary kernels' register budget, with float32 lanes (twice the uint64
    lanes) and 4-byte accumulators."""
    cfg = select(target)
    float_cfg = replace(cfg, lanes=cfg.float_lanes, min_rows=1)
    return choose_tile(p.grid[1], p.n, float_cfg, acc_bytes=FLOAT_BYTES)


def schedule(func: tirx.PrimFunc, tile: Tile) -> IRModule:
    """Schedule a patch-conv PrimFunc whose weight panels are ``tile.nr * tile.vl`` wide."""
    sch = Schedule(func)
    out, acc = sch.get_sblock(OUT), sch.get_sblock(ACC)
    b, n, i, j = sch.get_loops(out)
    jo, ji = sch.split(j, [None, tile.mr])
    no, nv, nl = sch.split(n, [None, tile.nr, tile.vl])
    sch.reorder(b, no, i, jo, nv, nl, ji)
    sch.compute_at(acc, jo)  # a global buffer under 1024 bytes: a stack alloca that LLVM keeps in registers
    ami, an, c, kh, kw = sch.get_loops(acc)[-5:]
    anv, anl = sch.split(an, [tile.nr, tile.vl])
    sch.reorder(c, kh, kw, ami, anv, anl)
    vectorize_unroll(sch, [ami, anv, anl])
    for loop in (nv, nl, ji, kw):
        sch.unroll(loop)
    sch.parallel(sch.fuse(b, no, i, jo))
    init = sch.decompose_reduction(acc, c)
    vectorize_unroll(sch, sch.get_loops(init)[-3:])
    return sch.mod
