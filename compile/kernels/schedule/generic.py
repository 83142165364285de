"""Target-independent schedules for the binary computes, parametrised by a :class:`TileConfig`.

The PrimFuncs are recognised by their block names (:mod:`..blocks`), and a GEMM's tile axes by the block's
:data:`~..blocks.TILE_AXES_ATTR` annotation:

* ``"pack"``: float -> uint64 words. With the word axis last (bits contiguous in the source), each whole
  word comes from the config's ``sign_word`` intrinsic where it has one (x86), else the 64-bit reduction is
  rfactored so ``pack_lanes`` contiguous floats are compared per vector op; otherwise the contiguous axes
  after the word axis are vectorised and the bits loop is kept outside, accumulating in registers.
* ``"pad"`` / ``"gather"`` (staging before a GEMM): parallel over the leading loops; the gather's
  word loop is unrolled (its per-word shift/OR selection folds away) and a trailing pixel loop
  vectorised.
* ``"acc"`` + ``"out"`` (popcount GEMM): the output tile is ``MR`` rows (axis ``m``) by
  ``NR x lanes`` columns (axis ``n``), kept in registers of the config's accumulator type (``acc_dtype``, or the
  config's micro-kernel's own registers where it takes the tile) while the reduction runs; the
  float epilogue writes the tile; the loops outside the tile are fused and run in parallel (with the config's
  ``serial_columns``, the loops outside a row of tiles, each task sweeping its row).
  When ``n`` is not a multiple of the lanes (attention's 53 keys) but a row's sums fit the stack, the tile is one
  row: its sums are whole vectors where the compute padded them (the A76's keys), else whole vectors and one
  shorter vector, the whole vectors swept in chunks of at most the register budget.
* ``"transpose"`` (a small operand copy before a GEMM): left serial, innermost loop whole.
* ``"acc"`` + ``"out"`` + ``"pack"`` + ``"pool"`` (GEMM whose float output is internal): each parallel
  tile covers ``MR`` rows by one word (64 columns) of ``out``, computed as above into a stack tile
  (``MR`` is capped so it fits, except where that leaves one row or the reduction has the config's
  ``workspace_tile_words`` or more: then the tile is a workspace, allocated once per parallel task of a few tiles),
  then each tile row packed (as above) and pooled by a shuffle tree (:mod:`.epilogue`).

This module's :data:`GENERIC` config is correct on every LLVM target; x86 and rpi5 tune it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

from tvm import IRModule, tirx
from tvm.s_tir import Schedule, ScheduleError

from ..blocks import ACC, GATHER, OUT, PACK, PAD, POOL, ROWSUM, TILE_AXES_ATTR, TRANSPOSE, WORD_AXIS_ATTR
from ..params import WORD_BITS
from .epilogue import pool_tree_intrin
from .register_transpose import ANNOTATION

__all__ = [
    "TileConfig",
    "Tile",
    "GENERIC",
    "MICRO_KERNEL_ATTR",
    "STACK_ALLOCA_BYTES",
    "FLOAT_BYTES",
    "choose_tile",
    "pow2_divisor",
    "vectorize_unroll",
    "partition",
    "tensorizes",
    "tensorized",
    "schedule",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileConfig:
    """Register-blocking knobs of one target."""

    name: str
    lanes: int  # uint64 lanes per vector register
    acc_regs: int  # most int64 accumulator vectors a tile may hold (MR * NR)
    pack_lanes: int  # float32 lanes compared per vector op in the pack
    max_rows: int = 8  # MR cap (broadcast operands per reduction step)
    acc_dtype: str = "int64"  # the popcount sums' type in the dense, conv and Q·Kᵀ computes
    # form the dot products K - 2 * sums in float32, not in the sums' type (compute._common.signed_dot): on x86 an
    # int64 vector holds half a float vector's lanes (2 int64 ops per 8 lanes became 1 multiply-add per 16, w=3
    # 0.97x with the 7-row fc1 tile); on the A76 the integer form is shorter (tile epilogues 16 float ops, not 40)
    float_dot: bool = False
    wide_epilogue: bool = False  # plain GEMMs: vectorise the float epilogue over a tile row (NR x lanes), not lanes
    min_rows: int = 1  # MR floor where some divisor of the rows allows it (rows share a column operand's loads)
    # optional micro-kernel for a GEMM tile: (schedule, acc block with its reduction loop outermost, tile) -> the
    # name of a tensor intrinsic that takes the whole tile and reduction, or None (the vectorised accumulate)
    micro_kernel: Callable[[Schedule, object, Tile], str | None] | None = None
    # optional tensor intrinsic packing 64 contiguous floats into their sign word, by whether a threshold is added
    # (every whole-word pack of rows, the fused MLP fc1's included); None: the rfactored pack
    sign_word: Callable[[bool], str] | None = None
    # a tile whose rows are the output's contiguous axis (NCHW convs tiled pixels x channels) takes a power-of-two
    # MR and writes its rows through a register transpose (.register_transpose), not lane by lane
    transposed_stores: bool = False
    # a task of a tiled GEMM's parallel loop (not the fused fc1's or a one-row tile's) sweeps a row of tiles (affine
    # addresses, not a division per tile) where the rows of tiles are MIN_TASKS or more
    serial_columns: bool = False
    # the fused MLP fc1 takes a tile of more rows than the stack holds (a workspace per parallel task) from this many
    # reduction words on; None: only where the stack would hold one row
    workspace_tile_words: int | None = None

    @property
    def float_lanes(self) -> int:
        """float32 lanes per vector register (twice the uint64 lanes), for the FP32 kernels."""
        return 2 * self.lanes


@dataclass(frozen=True)
class Tile:
    mr: int
    nr: int
    vl: int


GENERIC = TileConfig("generic", lanes=2, acc_regs=8, pack_lanes=4)
MICRO_KERNEL_ATTR = "bhvit.micro_kernel"  # PrimFunc attribute: the tensor intrinsic that took the GEMM's tile

# TVM's LowerTVMBuiltin puts only "global"-scope CPU buffers under 1024 bytes (runtime::kMaxStackAlloca)
# on the stack, where LLVM promotes them to registers; any other buffer (including scope "local") is a
# TVMBackendAllocWorkspace call per tile, and the accumulators then live in memory.
STACK_ALLOCA_BYTES = 1024
ACC_BYTES = 8  # int64 accumulators
MIN_TRANSPOSED_ROWS = 4  # a tile stored through a register transpose
MIN_TASKS = 64  # parallel tasks of a loop split into tasks (a few per thread keeps the threads' loads even)
FLOAT_BYTES = 4


def pow2_divisor(n: int, cap: int) -> int:
    """The largest power of two that divides ``n`` and is at most ``cap``."""
    v = 1
    while v * 2 <= cap and n % (v * 2) == 0:
        v *= 2
    return v


def choose_tile(m: int, n: int, cfg: TileConfig, acc_bytes: int = ACC_BYTES, pow2_rows: bool = False) -> Tile:
    """Largest MR x NR accumulator tile (MR | m, NR * VL | n) within the register budget.

    VL is the largest power-of-two divisor of n up to ``lanes``. The tile (``acc_bytes`` per accumulator) also
    stays under TVM's stack-allocation limit. Ties prefer the larger MR (fewer weight loads per broadcast); MR is
    at least ``min_rows`` where a divisor of m allows it; ``pow2_rows``: MR is a power of two up to VL.
    """
    vl = pow2_divisor(n, cfg.lanes)
    max_vectors = min(cfg.acc_regs, (STACK_ALLOCA_BYTES - 1) // (vl * acc_bytes))
    best = (0, 0, 1, 1)
    divisors = [mr for mr in range(1, min(m, cfg.max_rows) + 1) if m % mr == 0]
    if pow2_rows:
        divisors = [mr for mr in divisors if mr <= vl and mr & (mr - 1) == 0]
    for mr in [d for d in divisors if d >= cfg.min_rows] or divisors:
        for nr in range(1, max_vectors // mr + 1):
            if (n // vl) % nr == 0:
                best = max(best, (mr * nr, mr, mr, nr))
    return Tile(best[2], best[3], vl)


def _tiles_whole_rows(n: int, cfg: TileConfig) -> bool:
    """Whether a GEMM with ``n`` columns, not a multiple of the lanes, is tiled by whole rows: a row's accumulators
    fit TVM's stack-allocation limit (a row of more vectors than the register budget is swept in chunks)."""
    return n % cfg.lanes != 0 and n > cfg.lanes and n * ACC_BYTES < STACK_ALLOCA_BYTES


def schedule(func: tirx.PrimFunc, cfg: TileConfig = GENERIC) -> IRModule:
    """Schedule one binary PrimFunc (a pack, or a popcount GEMM with an optional ``rowsum``, ``pad``, ``gather`` or
    ``transpose``). A GEMM whose tile the config's micro-kernel took names it in :data:`MICRO_KERNEL_ATTR`."""
    if cfg is GENERIC:
        log.info("binary kernels: using the generic (fallback) schedule")
    sch = Schedule(func)
    intrin = None
    if _has_block(sch, POOL):
        intrin = _schedule_gemm_pack_pool(sch, cfg)
    elif _has_block(sch, PACK):
        _schedule_pack(sch, cfg)
    else:
        intrin = _schedule_gemm(sch, cfg)
        if _has_block(sch, PAD):
            _schedule_pad(sch, sch.get_sblock(PAD))
        if _has_block(sch, GATHER):
            _schedule_gather(sch, sch.get_sblock(GATHER))
        if _has_block(sch, ROWSUM):
            _parallel_spatial(sch, sch.get_sblock(ROWSUM))
        if _has_block(sch, TRANSPOSE):  # B x H x Dw x n words for attention: a thread launch would cost more
            vectorize_unroll(sch, sch.get_loops(sch.get_sblock(TRANSPOSE))[-1:])
    mod = sch.mod
    if intrin is not None:
        mod["main"] = mod["main"].with_attr(MICRO_KERNEL_ATTR, intrin)
    return mod


def tensorized(func: tirx.PrimFunc) -> bool:
    """Whether the schedule gave a GEMM's tile to the config's micro-kernel (:data:`MICRO_KERNEL_ATTR`; the pack
    and pool intrinsics do not count)."""
    return func.attrs is not None and MICRO_KERNEL_ATTR in func.attrs


def _tile_axes(sch: Schedule, block) -> tuple[int, int]:
    """Positions of the tile's row and column axes among the block's iter vars (set by the compute)."""
    m, n = sch.get(block).annotations[TILE_AXES_ATTR]
    return int(m), int(n)


def _has_block(sch: Schedule, name: str) -> bool:
    try:
        sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - s_tir raises a generic error for a missing block
        return False
    return True


def _extent(sch: Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def partition(sch: Schedule, loop, cuts: list[int]) -> list:
    """``loop`` split into consecutive pieces at the sorted positions ``cuts`` (each inside the loop), with the
    pieces' loops; ``[loop]`` without cuts."""
    if not cuts:
        return [loop]
    bounds = [0, *cuts]
    # the last piece's size is left to the primitive (given, it refuses factors that add up to the extent)
    return list(sch.loop_partition(loop, [*(hi - lo for lo, hi in zip(bounds, bounds[1:])), None]))


def vectorize_unroll(sch: Schedule, loops: list) -> None:
    """Vectorise the innermost loop when it is wider than 1, unroll the others."""
    if not loops:
        return
    *rest, last = loops
    if _extent(sch, last) > 1:
        sch.vectorize(last)
    for loop in rest:
        sch.unroll(loop)


def _parallel_spatial(sch: Schedule, block) -> None:
    """Fuse the leading spatial loops of a block into one parallel loop."""
    block_ivs = sch.get(block).iter_vars
    n_spatial = sum(iv.iter_type == tirx.IterVar.DataPar for iv in block_ivs)
    _parallel(sch, sch.get_loops(block)[:n_spatial])


def _schedule_pad(sch: Schedule, block) -> None:
    """Parallel over the rows, the innermost loop kept whole (no index div/mod per element)."""
    *rows, _ = sch.get_loops(block)
    _parallel(sch, rows)


def _schedule_gather(sch: Schedule, block) -> None:
    """Parallel over the loops before the word axis, word loop unrolled, a trailing loop vectorised."""
    loops = sch.get_loops(block)
    word_axis = int(sch.get(block).annotations[WORD_AXIS_ATTR])
    _parallel(sch, loops[:word_axis])
    sch.unroll(loops[word_axis])
    if word_axis < len(loops) - 1 and _extent(sch, loops[-1]) > 1:
        sch.vectorize(loops[-1])


def _schedule_gemm(sch: Schedule, cfg: TileConfig) -> str | None:
    # 1. analyse: the tile axes as the compute annotated them
    out, acc = sch.get_sblock(OUT), sch.get_sblock(ACC)
    extents = [int(iv.dom.extent) for iv in sch.get(out).iter_vars]
    m_ax, n_ax = _tile_axes(sch, out)
    if _tiles_whole_rows(extents[n_ax], cfg):
        return _schedule_gemm_rows(sch, cfg, n_ax)
    tile = choose_tile(extents[m_ax], extents[n_ax], cfg)
    across = cfg.transposed_stores and _stores_along(sch, out, m_ax)
    if across:  # worth its narrower tile only with 4 rows or more (14x14 maps: 2 rows instead of 7 was slower)
        rows = choose_tile(extents[m_ax], extents[n_ax], cfg, pow2_rows=True)
        tile, across = (rows, True) if rows.mr >= MIN_TRANSPOSED_ROWS else (tile, False)
    # 2. tile the output: outer loops, then MR x NR x lanes
    loops = sch.get_loops(out)
    mo, mi = sch.split(loops[m_ax], [None, tile.mr])
    no, nv, nl = sch.split(loops[n_ax], [None, tile.nr, tile.vl])
    outer = [loop for i, loop in enumerate(loops) if i not in (m_ax, n_ax)]
    sch.reorder(*outer, mo, no, mi, nv, nl)
    steps = _accumulate(sch, acc, no, tile, cfg)
    # 4. epilogue: vectorised over n, unrolled over the tile (or its rows transposed, where they are contiguous)
    if across:
        sch.reorder(nv, mi, nl)
        sch.annotate(mi, ANNOTATION, 1)
        vectorize_unroll(sch, [nv, nl])
    else:
        _vectorize_epilogue(sch, mi, nv, nl, cfg.wide_epilogue)
    tasks = sch.fuse(*outer, mo)
    if not cfg.serial_columns or _extent(sch, tasks) < MIN_TASKS:
        tasks = sch.fuse(tasks, no)
    sch.parallel(tasks)
    return _split_init(sch, acc, steps)


def _stores_along(sch: Schedule, out, axis: int) -> bool:
    """Whether the block's output is contiguous along block axis ``axis`` (its write's last index uses it)."""
    var = sch.get(out).iter_vars[axis].var
    last = sch.get(out).writes[0].region[-1].min
    return any(v.same_as(var) for v in tirx.analysis.undefined_vars(last, []))


def _schedule_gemm_rows(sch: Schedule, cfg: TileConfig, n_ax: int) -> str | None:
    """One output row per tile. The row of sums accumulates in registers with the reduction outermost: its columns
    are whole vectors, where the compute padded the sums to whole vectors (as attention's keys on the A76), or
    else whole vectors and a shorter last one; the whole vectors run in chunks of at most the register budget (the
    A76's 16 for 27 vectors of 54 padded keys: 3 chunks of 9), each chunk through the config's micro-kernel where
    it takes it (its name is returned). The float epilogue: whole vectors and a shorter last one."""
    out, acc = sch.get_sblock(OUT), sch.get_sblock(ACC)
    out_loops = sch.get_loops(out)
    n = _extent(sch, out_loops[n_ax])
    sum_cols = int(sch.get(acc).iter_vars[n_ax].dom.extent)  # more than n where the compute padded the sums
    whole = sum_cols if sum_cols % cfg.lanes == 0 else n - n % cfg.lanes
    outer = [loop for i, loop in enumerate(out_loops) if i != n_ax]
    sch.reorder(*outer, out_loops[n_ax])
    sch.compute_at(acc, outer[-1])
    row = sch.fuse(*outer)
    sch.parallel(row)  # before a tensorize: its outer block's unit reduction would make the loop not parallel
    cols = sch.get_loops(acc)[1]  # the acc's column loop (then its reductions)
    intrin = None
    # sums padded: the row's last vector reads and writes the padding (no predicate, no partition)
    pieces = [cols] if whole > n else sch.loop_partition(cols, [whole, None])
    for piece, vectors in zip(pieces, [whole // cfg.lanes, 0]):
        block = sch.get_child_blocks(piece)[0]
        loops = sch.get_loops(block)
        at = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(piece)))
        col, red = loops[at], loops[at + 1 :]
        chunk = []
        if vectors:
            per_chunk = max(d for d in range(1, min(vectors, cfg.acc_regs) + 1) if vectors % d == 0)
            *chunk, col = sch.split(col, [vectors // per_chunk, per_chunk * cfg.lanes], disable_predication=True)
            sch.reorder(*chunk, *red, col)
            taken = cfg.micro_kernel(sch, block, Tile(1, per_chunk, cfg.lanes)) if _one_reduction(cfg, red) else None
            if taken is not None:
                intrin = _split_init(sch, block, _Accumulation(red, [col], taken))
                continue
            tile_loops = list(sch.split(col, [None, cfg.lanes]))
        else:
            tile_loops = [col]
        sch.reorder(*chunk, *red, *tile_loops)
        vectorize_unroll(sch, tile_loops)
        if red:
            init = sch.decompose_reduction(block, red[0])
            vectorize_unroll(sch, sch.get_loops(init)[-len(tile_loops) :])
    body = n - n % cfg.lanes
    for piece in sch.loop_partition(sch.get_loops(out)[-1], [body, None]):
        vectorize_unroll(sch, sch.split(piece, [None, cfg.lanes]) if _extent(sch, piece) == body else [piece])
    return intrin


def _one_reduction(cfg: TileConfig, reductions: list) -> bool:
    """Whether the config's micro-kernel may try a tile: it has one, and the tile one reduction loop."""
    return cfg.micro_kernel is not None and len(reductions) == 1


def _vectorize_epilogue(sch: Schedule, mi, nv, nl, wide: bool) -> None:
    """The float epilogue vectorised over the tile's lanes, or, ``wide``, over its whole row (float32 vectors hold
    more lanes than the uint64 ones)."""
    if wide and _extent(sch, nl) > 1:
        vectorize_unroll(sch, [mi, sch.fuse(nv, nl)])
    else:
        vectorize_unroll(sch, [mi, nv, nl])


class _Accumulation(NamedTuple):
    """Step 3's loops for step 5: the reduction loops and the tile's loops, or, where a micro-kernel takes the tile,
    its one reduction loop, its row (unless one) and column loops and the intrinsic's name."""

    reductions: list
    tile_loops: list
    intrin: str | None = None


def _accumulate(sch: Schedule, acc, loop, tile: Tile, cfg: TileConfig) -> _Accumulation:
    """Step 3: the acc tile under ``loop`` in registers, reduction outermost."""
    sch.compute_at(acc, loop)  # global scope: only a small global buffer is a stack alloca (see STACK_ALLOCA_BYTES)
    inner = _tile_loops(sch, acc, tile)
    reductions = [inner[k] for k in inner if k not in _TILE_ROLES]
    tile_axes = [inner[k] for k in (_ROWS, _COLS) if k in inner]
    if _one_reduction(cfg, reductions) and _COLS in inner and len(inner) == 1 + len(tile_axes):
        sch.reorder(reductions[0], *tile_axes)  # reduction, rows (unless one), cols
        intrin = cfg.micro_kernel(sch, acc, tile)
        if intrin is not None:
            return _Accumulation(reductions, tile_axes, intrin)
    if _COLS in inner:
        inner[_COLS], inner[_LANES] = sch.split(inner[_COLS], [tile.nr, tile.vl])
    tile_loops = [inner[k] for k in _TILE_ROLES if k in inner]
    sch.reorder(*reductions, *tile_loops)
    vectorize_unroll(sch, tile_loops)
    return _Accumulation(reductions, tile_loops)


def _split_init(sch: Schedule, acc, steps: _Accumulation) -> str | None:
    """Step 5: zero-init separated from the reduction (last: it freezes the acc block's loops), then the
    micro-kernel, if any, tensorizes the reduction; returns the micro-kernel's name."""
    if steps.intrin is not None:
        init = sch.decompose_reduction(acc, steps.reductions[0])
        vectorize_unroll(sch, sch.get_loops(init)[-len(steps.tile_loops) :])
        sch.tensorize(steps.reductions[0], steps.intrin)
        return steps.intrin
    if steps.reductions or steps.tile_loops:
        init = sch.decompose_reduction(acc, (steps.reductions or steps.tile_loops)[0])
        vectorize_unroll(sch, sch.get_loops(init)[-len(steps.tile_loops) :] if steps.tile_loops else [])
    return None


def _schedule_gemm_pack_pool(sch: Schedule, cfg: TileConfig) -> str | None:
    """Per tile of MR rows x one word: the GEMM tile into a stack buffer (a workspace per task of tiles where the
    stack holds only one row or the reduction is long), then its pack and pool."""
    out, acc = sch.get_sblock(OUT), sch.get_sblock(ACC)
    m, n = sch.get_loops(out)
    stack_rows = (STACK_ALLOCA_BYTES - 1) // (WORD_BITS * FLOAT_BYTES)
    tile = choose_tile(_extent(sch, m), WORD_BITS, replace(cfg, max_rows=min(cfg.max_rows, stack_rows)))
    long = cfg.workspace_tile_words is not None and _reduction_extent(sch, acc) >= cfg.workspace_tile_words
    if tile.mr == 1 or long:
        # one row loads a weight vector per popcount; more rows than the stack holds make the tile a workspace,
        # allocated once per parallel task (below)
        tile = choose_tile(_extent(sch, m), WORD_BITS, cfg)
    mo, mi = sch.split(m, [None, tile.mr])
    no, nc, nv, nl = sch.split(n, [None, WORD_BITS // (tile.nr * tile.vl), tile.nr, tile.vl])
    sch.reorder(mo, no, nc, mi, nv, nl)
    steps = _accumulate(sch, acc, nc, tile, cfg)
    # wide on every target: the pack and pool read the tile back in whole-row vectors, which only stores as wide
    # forward to (x86, 8-lane stores: stage-0 fc1 1.2x slower, w=1's stage-1 fc1 1.3-1.5x)
    _vectorize_epilogue(sch, mi, nv, nl, True)
    if tile.mr > stack_rows:
        # parallel tasks of a few words each: TVM allocates a workspace in the innermost parallel loop's body, so
        # once per task, not once per tile (w=3 stage-1 fc1: 5376 tiles per call)
        words, tiles = _extent(sch, no), _extent(sch, mo) * _extent(sch, no)
        per_task = max((d for d in range(1, words + 1) if words % d == 0 and tiles // d >= MIN_TASKS), default=1)
        no, word = sch.split(no, [None, per_task])
        sch.parallel(sch.fuse(mo, no))
    else:
        word = sch.fuse(mo, no)
        sch.parallel(word)
    pack, pool = sch.get_sblock(PACK), sch.get_sblock(POOL)
    rf = None
    if cfg.sign_word is None:  # before the move: rfactor needs the block first under its outer loop
        rf = _rfactor_lanes(sch, pack, sch.get_loops(pack)[-1], cfg.pack_lanes)
    for block in (rf, pack, pool):
        if block is not None:
            sch.reverse_compute_at(block, word)
    if rf is not None:
        if tile.mr > 1:  # the rfactor put the lane loop first: rows outermost again
            for block in (rf, pack):
                loops = sch.get_loops(block)
                at = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(word)))
                lane, row = loops[at + 1 : at + 3]
                sch.reorder(row, lane)
        _vectorize_lanes(sch, pack, rf)
    else:
        _sign_word(sch, pack, cfg)
    _pool_tile(sch, pool)
    return _split_init(sch, acc, steps)


def _reduction_extent(sch: Schedule, block) -> int:
    """The product of a block's reduction extents (the words a GEMM's popcount sums run over)."""
    extent = 1
    for iv in sch.get(block).iter_vars:
        if iv.iter_type == tirx.IterVar.CommReduce:
            extent *= int(iv.dom.extent)
    return extent


def _has_threshold(sch: Schedule, pack) -> bool:
    """Whether a pack block reads a threshold besides its floats (and, once decomposed, its own word)."""
    block = sch.get(pack)
    word = block.writes[0].source
    return sum(not r.source.same_as(word) for r in block.reads) == 2


def _whole_words(sch: Schedule, pack) -> bool:
    """Whether a config's sign-word intrinsic may take this pack: the floats' last axis a multiple of 64, so every
    word has all 64 bits (a trial tensorize that fails prints the IR as a warning)."""
    floats = sch.get(pack).reads[0].source
    return int(floats.shape[-1]) % WORD_BITS == 0


def tensorizes(sch: Schedule, block, loop, intrin: str) -> bool:
    """Whether ``intrin`` matches ``block``'s reduction under ``loop`` (tried on a copy of the schedule)."""
    trial = sch.copy()
    try:
        trial.decompose_reduction(block, loop)
        trial.tensorize(loop, intrin)
    except ScheduleError:
        return False
    return True


def _sign_word(sch: Schedule, pack, cfg: TileConfig) -> None:
    """Each word of a full 64-bit pack from the config's sign-word intrinsic."""
    bits = sch.get_loops(pack)[-1]
    sch.decompose_reduction(pack, bits)
    sch.tensorize(bits, cfg.sign_word(_has_threshold(sch, pack)))


def _pool_tile(sch: Schedule, block) -> None:
    """Each tile row's groups at once, as a tree of whole-row shuffles and adds (a vector over the groups would
    read the tile strided, lane by lane). A ratio of 1 (a copy) or 64 (one group) has no lanes to shuffle: its
    loop over the row is unrolled."""
    ratio = int(sch.get(block).iter_vars[-1].dom.extent)
    inner = sch.get_loops(block)[-1]  # reverse_compute_at dropped the unit loop of either kind
    if ratio in (1, WORD_BITS):
        sch.unroll(inner)
        sch.decompose_reduction(block, inner)
        return
    groups = sch.get_loops(block)[-2]
    init = sch.decompose_reduction(block, groups)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(groups, pool_tree_intrin(ratio))


_ROWS, _COLS, _LANES = "rows", "cols", "lanes"  # roles of the acc tile's loops, innermost last
_TILE_ROLES = (_ROWS, _COLS, _LANES)


def _tile_loops(sch: Schedule, acc, tile: Tile) -> dict:
    """Map the acc block's axes to its loops under the tile (unit loops are dropped): the tile axes by their
    role, each reduction axis by its position."""
    m_ax, n_ax = _tile_axes(sch, acc)
    sizes = {m_ax: (_ROWS, tile.mr), n_ax: (_COLS, tile.nr * tile.vl)}
    keys = []
    for i, iv in enumerate(sch.get(acc).iter_vars):
        key, size = sizes.get(i, (f"axis{i}", 1))
        if iv.iter_type == tirx.IterVar.CommReduce:
            size = int(iv.dom.extent)
        if size > 1:
            keys.append(key)
    loops = sch.get_loops(acc)[-len(keys) :] if keys else []
    return dict(zip(keys, loops))


def _schedule_pack(sch: Schedule, cfg: TileConfig) -> None:
    block = sch.get_sblock(PACK)
    word_axis = int(sch.get(block).annotations[WORD_AXIS_ATTR])
    *spatial, bits = sch.get_loops(block)
    if word_axis == len(spatial) - 1:
        if (
            cfg.sign_word is not None
            and _whole_words(sch, block)
            and tensorizes(sch, block, bits, cfg.sign_word(_has_threshold(sch, block)))
        ):
            _parallel(sch, spatial[:-1])
            _sign_word(sch, block, cfg)
        else:
            _pack_rfactor(sch, block, spatial, bits, cfg.pack_lanes)
    else:
        _pack_outer(sch, block, spatial, bits, word_axis, cfg.pack_lanes)


def _pack_rfactor(sch: Schedule, block, spatial: list, bits, lanes: int) -> None:
    """Bits contiguous in the source: per-lane partial words, then a lanes-wide OR (sum)."""
    rf = _rfactor_lanes(sch, block, bits, lanes)
    if rf is None:
        _parallel_spatial(sch, block)
        return
    sch.compute_at(rf, spatial[-1])
    _parallel(sch, spatial[:-1])
    _vectorize_lanes(sch, block, rf)


def _parallel(sch: Schedule, loops: list) -> None:
    """``loops`` (outermost first, consecutive) fused into one parallel loop; nothing when there are none."""
    if loops:
        sch.parallel(sch.fuse(*loops))


def _rfactor_lanes(sch: Schedule, block, bits, lanes: int):
    """Split the bits into ``lanes`` and rfactor the lane axis into a partial-word block (None: no lanes)."""
    lanes = pow2_divisor(_extent(sch, bits), lanes)
    if lanes == 1:
        return None
    _, b_lane = sch.split(bits, [None, lanes])
    return sch.rfactor(b_lane, len(sch.get(block).writes[0].region))  # lanes last: contiguous partial words


def _vectorize_lanes(sch: Schedule, block, rf) -> None:
    """Partial words vectorised over the lanes, their OR unrolled; then the inits split off."""
    r_lane, r_step = sch.get_loops(rf)[-2:]
    sch.reorder(r_step, r_lane)
    sch.vectorize(r_lane)
    sch.unroll(r_step)
    sch.unroll(sch.get_loops(block)[-1])
    sch.decompose_reduction(rf, r_step)
    sch.decompose_reduction(block, sch.get_loops(block)[-1])


def _pack_outer(sch: Schedule, block, spatial: list, bits, word_axis: int, lanes: int) -> None:
    """Bits strided in the source: vectorise the contiguous trailing axes, bits loop outside.

    The vector of words stays in registers across the bits loop (LLVM promotes the noalias
    load/store pair), so the output is written once.
    """
    lead, trail = spatial[: word_axis + 1], spatial[word_axis + 1 :]
    flat = sch.fuse(*trail) if len(trail) > 1 else trail[0]
    vl = pow2_divisor(_extent(sch, flat), lanes)
    t_out, t_lane = sch.split(flat, [None, vl])
    sch.reorder(t_out, bits, t_lane)
    if vl > 1:
        sch.vectorize(t_lane)
    sch.parallel(sch.fuse(*lead, t_out))
    init = sch.decompose_reduction(block, bits)
    if vl > 1:
        sch.vectorize(sch.get_loops(init)[-1])
