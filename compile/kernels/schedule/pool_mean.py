"""Schedule of the FP32 mean pool (:mod:`..compute.pool_mean`).

Parallel over (batch, channel, output row); each output row is one tensor intrinsic: the ``k`` input rows it reads
are added as whole contiguous vectors, then each window's ``k`` neighbouring lanes are summed by ``k`` lane
shuffles (deinterleaving, ``vpermt2ps`` on AVX-512, ``uzp``/``ld2`` on NEON). Vectorised as computed, the window's
columns are a strided load that TVM emits one lane at a time (56 scalar loads and inserts per 28-column row).
"""

from __future__ import annotations

from functools import cache, partial

from tvm import IRModule, tirx
from tvm.s_tir import Schedule
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as B

from ..blocks import OUT
from ..params import WindowParams
from .intrin import register_intrin, row_view

__all__ = ["pool_row_intrin", "schedule"]


def schedule(func: tirx.PrimFunc, p: WindowParams) -> IRModule:
    """Schedule a mean-pool PrimFunc of shape ``p``."""
    sch = Schedule(func)
    out = sch.get_sblock(OUT)
    b, c, i, j = sch.get_loops(out)[:4]
    sch.parallel(sch.fuse(b, c, i))
    init = sch.decompose_reduction(out, j)
    gw = p.grid[1]
    if gw > 1:  # one output column: nothing to vectorise
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(j, pool_row_intrin(p.k, gw))
    return sch.mod


@cache
def pool_row_intrin(k: int, columns: int) -> str:
    """Register (once) and name the intrinsic for one output row of ``columns`` ``k x k`` window means."""
    return register_intrin(f"bhvit_pool_row_{k}x{columns}", partial(_pool_row_func, k, columns))


def _pool_row_func(k: int, columns: int, tensorized: bool) -> tirx.PrimFunc:
    """The intrinsic's description (the pool's reduction) or implementation (rows added, then lanes shuffled)."""
    width = columns * k  # input columns read
    inv = B.float32(1.0 / (k * k))
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
                    rows = rows + X[r, B.ramp(0, 1, width)]
                sums = tirx.Shuffle([rows], [j * k for j in range(columns)])
                for s in range(1, k):
                    sums = sums + tirx.Shuffle([rows], [j * k + s for j in range(columns)])
                lanes = B.ramp(0, 1, columns)
                B.buffer_store(Y, Y[0, lanes] + sums * B.broadcast(inv, columns), [0, lanes])
            else:
                with B.grid(columns, k, k) as (j, r, s), B.sblock("update"):
                    vj, vr, vs = B.axis.remap("SRR", [j, r, s])
                    B.reads(Y[0, vj], X[vr, vj * k + vs])
                    B.writes(Y[0, vj])
                    B.buffer_store(Y, Y[0, vj] + X[vr, vj * k + vs] * inv, [0, vj])
    return ib.get()
