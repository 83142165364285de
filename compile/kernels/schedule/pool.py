"""Schedule of the FP32 mean and max pools (:mod:`..compute.pool`).

Each output row is one tensor intrinsic: the ``k`` input rows it reads are combined (added, or their maximum taken)
as whole contiguous vectors, then each window's ``k`` neighbouring lanes are combined by ``k`` lane shuffles
(deinterleaving, ``vpermt2ps`` on AVX-512, ``uzp``/``ld2`` on NEON). Vectorised as computed, the window's columns
are a strided load that TVM emits one lane at a time (56 scalar loads and inserts per 28-column row).

Without padding the loop over (batch, channel, output row) runs in parallel. With padding it is (batch, channel):
each channel first copies the part of its map the windows read into a bordered buffer of its own, the loops of
that copy cut where the border starts and ends (inside each piece the border test is constant, so every piece is a
plain vector fill or copy), and the rows then pool that buffer. As TVM converts them (a gather of each window
lane by lane, every load behind a border test), the attention's padded 7x7 pools took 8-10 µs on a 256x14x14 map
at two threads (14-16 µs at one); the kernel takes 3 µs (5 µs).
"""

from __future__ import annotations

from functools import cache, partial

from tvm import IRModule, tirx
from tvm.s_tir import Schedule
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as B

from ..blocks import OUT, PAD
from ..params import PoolParams
from .generic import partition
from .intrin import register_intrin, row_view

__all__ = ["pool_row_intrin", "schedule"]


def schedule(func: tirx.PrimFunc, p: PoolParams) -> IRModule:
    """Schedule a pool PrimFunc of shape ``p``."""
    sch = Schedule(func)
    out = sch.get_sblock(OUT)
    b, c, i, j = sch.get_loops(out)[:4]
    if p.padding:
        channel = sch.fuse(b, c)
        sch.parallel(channel)
        _schedule_border(sch, channel, p)
    else:
        sch.parallel(sch.fuse(b, c, i))
    init = sch.decompose_reduction(out, j)
    gw = p.grid[1]
    if gw > 1:  # one output column: nothing to vectorise
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(j, pool_row_intrin(p.k, gw, p.reduce))
    return sch.mod


def _schedule_border(sch: Schedule, channel, p: PoolParams) -> None:
    """The bordered copy of one channel, computed inside the channel loop, each of its loops cut at the border."""
    pad = sch.get_sblock(PAD)
    sch.compute_at(pad, channel)
    h, w = sch.get_loops(pad)[-2:]
    (hp, h_map), (wp, w_map) = ((g * p.k, n) for g, n in zip(p.grid, (p.height, p.width)))
    for piece in _cut(sch, h, hp, p.padding, h_map):
        for inner in _cut(sch, sch.get_loops(sch.get_child_blocks(piece)[0])[-1], wp, p.padding, w_map):
            sch.vectorize(inner)


def _cut(sch: Schedule, loop, extent: int, padding: int, size: int) -> list:
    """``loop`` (over ``extent`` bordered positions) split into pieces at the map's first and last position."""
    return partition(sch, loop, sorted({b for b in (padding, padding + size) if 0 < b < extent}))


@cache
def pool_row_intrin(k: int, columns: int, reduce: str) -> str:
    """Register (once) and name the intrinsic for one output row of ``columns`` ``k x k`` window means or maxima."""
    return register_intrin(f"bhvit_pool_{reduce}_row_{k}x{columns}", partial(_pool_row_func, k, columns, reduce))


def _pool_row_func(k: int, columns: int, reduce: str, tensorized: bool) -> tirx.PrimFunc:
    """The intrinsic's description (the pool's reduction) or implementation (rows combined, then lanes shuffled)."""
    width = columns * k  # input columns read
    if reduce == "max":
        combine, weight = tirx.max, None
    else:
        combine, weight = (lambda a, b: a + b), B.float32(1.0 / (k * k))
    with IRBuilder() as ib, B.prim_func():
        x, y = B.arg("x", B.handle()), B.arg("y", B.handle())
        X = row_view(x, k, width, "float32")
        Y = row_view(y, 1, columns, "float32")
        with B.sblock("root"):
            B.reads(Y[0, 0:columns], X[0:k, 0:width])
            B.writes(Y[0, 0:columns])
            if tensorized:
                rows = X[0, B.ramp(0, 1, width)]
                for r in range(1, k):
                    rows = combine(rows, X[r, B.ramp(0, 1, width)])
                windows = tirx.Shuffle([rows], [j * k for j in range(columns)])
                for s in range(1, k):
                    windows = combine(windows, tirx.Shuffle([rows], [j * k + s for j in range(columns)]))
                if weight is not None:
                    windows = windows * B.broadcast(weight, columns)
                lanes = B.ramp(0, 1, columns)
                B.buffer_store(Y, combine(Y[0, lanes], windows), [0, lanes])
            else:
                with B.grid(columns, k, k) as (j, r, s), B.sblock("update"):
                    vj, vr, vs = B.axis.remap("SRR", [j, r, s])
                    B.reads(Y[0, vj], X[vr, vj * k + vs])
                    B.writes(Y[0, vj])
                    value = X[vr, vj * k + vs]
                    B.buffer_store(Y, combine(Y[0, vj], value if weight is None else value * weight), [0, vj])
    return ib.get()
