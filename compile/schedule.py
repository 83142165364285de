"""A generic CPU schedule for the FP PrimFuncs that nothing else scheduled (stem, head, norms, glue).

TVM's default CPU pipeline leaves legalized TIR unscheduled: serial loops, the reduction innermost, no explicit
vectors. This pass schedules every PrimFunc that is not marked scheduled (``tirx.is_scheduled``) and not opaque
(the kernels helper marks its kernels ``op_pattern=8``), block by block with :mod:`tvm.s_tir.Schedule`:

1. inline every spatial producer block into its consumers (pads, shifts, BN, signs before a conv/matmul), except
   one that a reduction and another block both read (softmax's exponentials);
2. spatial blocks: fuse the outer loops and parallelise them, vectorise the innermost loop (split by the vector
   width where it divides; first partitioned where a selection in the block flips along it, as at the wrap of a
   circular shift); where the innermost axis reads an input across its rows (a transpose, as from token-major
   ``(H*W, C)`` into a ``(C, H, W)`` map), the axis along the input's rows is first tiled by a cache line and the
   tile moved next to the innermost loop; where that axis lies right outside the innermost one and a power of two
   up to the lanes divides it (a map read into tokens), the tile is that many rows x one vector instead, which the
   TIR pass :mod:`~.kernels.schedule.register_transpose` turns into contiguous loads and register shuffles;
3. reduction blocks whose innermost output axis is also contiguous in an input (matmul, conv, token mean):
   register-tile it (``MR`` rows x ``NR`` vector lanes, local accumulators, the reduction loops outside the
   tile), parallelise the outer tiles and vectorise the lanes;
4. other reductions (step 3's when no register tile divides the output width): parallelise the spatial loops, keep
   the reduction inner. A reduction over one axis that is the last index of every input it reads (the rows of
   LayerNorm and of softmax's max and sum) is instead split into vector lanes of partial results (``rfactor``),
   combined at the end of each row, where the vector width divides it; where it does not (softmax over 53 or 50
   tokens) and the lanes divide the number of rows, the lanes run across rows, each reducing its own row in order
   (the loads gather, but no chain of dependent scalar maxima or sums remains). Both are tried before step 3.

TVM's ``dlight.cpu.Reduction`` rule schedules softmax and norm rows too, but sums them in scalars (its rfactor does
not combine with the ``compute_at`` of several blocks); it is not used.

Each block is scheduled on a copy of the schedule and kept only if every step succeeded, so an unusual block
stays correct rather than breaking the build; such a block runs serially, so it is logged as a warning with its
name and listed in :attr:`GenericCpuSchedule.serial`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import tvm
import tvm.sym
from tvm import tirx
from tvm.s_tir import Schedule

from .kernels.relax_emit import OPAQUE
from .kernels.schedule import select
from .kernels.schedule.generic import partition, pow2_divisor
from .kernels.schedule.register_transpose import ANNOTATION, CACHE_LINE_BYTES, tiles_per_line

__all__ = ["CpuScheduleCfg", "cpu_schedule_cfg", "schedule_primfunc", "needs_schedule", "GenericCpuSchedule"]

logger = logging.getLogger(__name__)

_SPATIAL, _REDUCE = tirx.IterVar.DataPar, tirx.IterVar.CommReduce
# What a schedule primitive raises when it does not apply (ScheduleError and TVM internal errors are RuntimeErrors).
_FAILURES = (RuntimeError, ValueError)


@dataclass(frozen=True)
class CpuScheduleCfg:
    """Tile sizes of the generic schedule. ``lanes``: float32 lanes of one vector register."""

    lanes: int = 16
    tile_rows: tuple[int, ...] = (6, 4, 7, 3, 2)  # preferred MR, first divisor of the row extent wins
    tile_vectors: int = 2  # NR: vector registers per accumulator row
    min_parallel: int = 1024  # do not parallelise elementwise blocks with fewer elements
    line_bytes: int = CACHE_LINE_BYTES  # the tile of a transposed read
    min_parallel_tasks: int = 16  # parallelise the vectors of a row too when the outer loops have fewer iterations


def cpu_schedule_cfg(target: tvm.target.Target) -> CpuScheduleCfg:
    """Tile sizes for a TVM llvm target: its float32 lanes as the binary kernels' tile config for it has them (16
    with AVX-512, 8 with AVX2, else 4: SSE2 on x86-64, NEON on aarch64)."""
    lanes = select(target).float_lanes
    return CpuScheduleCfg(lanes=lanes) if lanes > 4 else CpuScheduleCfg(lanes=4, tile_rows=(4, 7, 3, 2), tile_vectors=4)


def _extent(sch: Schedule, loop) -> int | None:
    return _int(sch.get(loop).extent)


def _iter_types(sch: Schedule, block) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def _vars_in(expr) -> set:
    return set(tirx.analysis.undefined_vars(expr, []))


def _inline_producers(sch: Schedule) -> None:
    """Step 1: inline spatial blocks that are not outputs (repeat until nothing changes), except those read by a
    reduction and by another block too (softmax's exponentials): inlined, they would be computed twice, once in
    the reduction's serial loop."""
    changed = True
    while changed:
        changed = False
        outputs = {sch.get(b).name_hint for b in sch.get_output_blocks("root")}
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            stmt = sch.get(block)
            if stmt.name_hint in outputs or any(t != _SPATIAL for t in _iter_types(sch, block)):
                continue
            consumers = sch.get_consumers(block)
            if len(consumers) > 1 and any(_REDUCE in _iter_types(sch, c) for c in consumers):
                continue
            try:
                sch.compute_inline(block)
                changed = True
            except _FAILURES:
                continue


def _schedule_spatial(sch: Schedule, block, cfg: CpuScheduleCfg) -> None:
    """Step 2: vectorise the innermost loop (split by the vector width when it divides), parallelise the rest.

    Where the block selects between values by a comparison of its innermost axis with a constant (the wrap of a
    circular shift, a concatenation along that axis), the innermost loop is first partitioned at those constants:
    inside each piece the selection is constant, so the piece vectorises; a vector loop holding such a selection
    would run lane by lane. A transposed read is tiled first (:func:`_tile_transposed_read`); with such a selection
    the innermost loop stays whole, so the partition applies inside the tile.
    """
    extents = [_extent(sch, loop) or 1 for loop in sch.get_loops(block)]
    cuts = _inner_cuts(sch, block, extents[-1])
    outer, tile, inner = _tile_transposed_read(sch, block, cfg, split_inner=not cuts)
    width = _extent(sch, inner) or 1
    if cuts:
        bounds = [0, *cuts, width]
        for piece, (lo, hi) in zip(partition(sch, inner, cuts), zip(bounds, bounds[1:])):
            _vectorize_inner(sch, piece, hi - lo, cfg)
    elif width % cfg.lanes == 0 and width > cfg.lanes:
        vectors, vector = sch.split(inner, [None, cfg.lanes])
        sch.vectorize(vector)
        # a loop of its own unless the outer loops are too few to share: fused into the parallel loop, each vector
        # recomputes every address from the fused index (about 50 integer divisions-by-multiplication and remainders
        # for a 16-float add); in its own loop the addresses advance by a constant
        if not tile and math.prod(extents[:-1]) < cfg.min_parallel_tasks:
            outer = [*outer, vectors]
    elif width <= 4 * cfg.lanes:
        sch.vectorize(inner)
    else:
        outer = [*outer, *tile, inner]
    if outer and math.prod(extents) >= cfg.min_parallel:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])


def _tile_transposed_read(sch: Schedule, block, cfg: CpuScheduleCfg, split_inner: bool) -> tuple[list, list, object]:
    """Tile a transposed read: ``(loops outside the tile, [the tile's loop], the innermost loop)``; without one,
    ``(all loops but the innermost, [], the innermost loop)``.

    Where the innermost axis strides through an input while an outer axis ``k`` walks along that input's rows, one
    cache line of the input serves consecutive values of ``k``, but everything inside ``k`` runs between two such
    uses. For a map ``(C, H, W)`` read from tokens ``(H*W, C)`` (``k`` = C) that is H*W lines: at stage 0 the line
    is evicted and loaded again for each ``k``. Splitting ``k`` by the elements of a line (or the largest divisor of
    its extent below that) and moving the inner part next to the innermost loop (``C/16, H, 16, W``) uses each line
    for all of them within the next ``W`` lines. For tokens ``(H*W, C)`` read from a map (``k`` = H*W) the lines in
    use between two uses are C, one per channel, and at stage 0 their addresses fall into few cache sets, so they
    evict each other: the innermost loop is tiled too (``H*W/16, C/64, 16, 64``) when ``split_inner`` allows it;
    where a power of two up to the lanes divides H*W and the lanes divide C, the tile is instead one of rows x one
    vector, marked for the register transpose (:func:`_register_transposed_tile`). Otherwise only the loop order
    changes.
    """
    loops = sch.get_loops(block)
    extents = [_extent(sch, loop) or 1 for loop in loops]
    axis = _transposed_axis(sch, block, cfg)
    untiled = loops[:-1], [], loops[-1]
    if axis is None:
        return untiled
    k, line = axis
    size = max(d for d in range(1, min(line, extents[k]) + 1) if extents[k] % d == 0)
    if size == 1:
        return untiled
    width = next((w for w in (4 * cfg.lanes, 2 * cfg.lanes, cfg.lanes) if extents[-1] % w == 0), extents[-1])
    rows = pow2_divisor(extents[k], cfg.lanes)
    if split_inner and math.prod(extents[k + 1 : -1]) == 1 and rows > 1 and extents[-1] % cfg.lanes == 0:
        return _register_transposed_tile(sch, loops, k, rows, line, width, cfg)
    if math.prod(extents[k + 1 : -1]) > 1:
        ko, ki = sch.split(loops[k], [None, size])
        outer, inner = [*loops[:k], ko, *loops[k + 1 : -1]], loops[-1]
    elif split_inner and width < extents[-1]:
        ko, ki = sch.split(loops[k], [None, size])
        io, inner = sch.split(loops[-1], [None, width])
        outer = [*loops[:k], ko, io]
    else:
        return untiled
    sch.reorder(*outer, ki, inner)
    return outer, [ki], inner


def _register_transposed_tile(
    sch: Schedule, loops: list, k: int, rows: int, line: int, width: int, cfg: CpuScheduleCfg
) -> tuple[list, list, object]:
    """The transposed read as tiles of ``rows`` (a power of two up to the lanes) x one vector, each a register
    transpose of contiguous loads (:mod:`~.kernels.schedule.register_transpose` takes the loop marked here):
    ``(k / (g * rows), inner / width, g, width / lanes, rows (marked), lanes (vector))``, where the ``g`` tiles
    of one cache line (at most ``line / rows``, a divisor of the tile count) run one after another."""
    per_line = tiles_per_line(_extent(sch, loops[k]) // rows, rows, line)
    ko, kq, ki = sch.split(loops[k], [None, per_line, rows])
    io, iv, inner = sch.split(loops[-1], [None, width // cfg.lanes, cfg.lanes])
    outer = [*loops[:k], ko, io]
    sch.reorder(*outer, kq, iv, ki, inner)
    sch.annotate(ki, ANNOTATION, 1)
    return outer, [kq, iv, ki], inner


def _transposed_axis(sch: Schedule, block, cfg: CpuScheduleCfg) -> tuple[int, int] | None:
    """``(k, elements of a cache line)`` for the first read of the block whose address moves by more than one element
    along the innermost axis and by one along axis ``k``; None when no read is so (or none is affine)."""
    stmt = sch.get(block)
    axes = [iv.var for iv in stmt.iter_vars]
    analyzer = tvm.sym.Analyzer()
    for iv in stmt.iter_vars:
        analyzer.bind(iv.var, iv.dom)
    for node in _subexpressions(stmt.body):
        if not isinstance(node, tvm.ir.expr.TensorLoad):
            continue
        strides = _axis_strides(node, axes, analyzer)
        if strides is None or abs(strides[-1]) <= 1:
            continue
        k = next((i for i, stride in enumerate(strides[:-1]) if abs(stride) == 1), None)
        if k is not None:
            return k, cfg.line_bytes * 8 // node.source.dtype.bits
    return None


def _axis_strides(load: tvm.ir.expr.TensorLoad, axes: list, analyzer: tvm.sym.Analyzer) -> list[int] | None:
    """Elements by which ``load``'s address in its (row-major) buffer moves per step of each axis; None unless the
    address is affine in the axes with constant coefficients. ``analyzer`` knows the axes' ranges, which removes
    the ``%`` and ``//`` of reshapes."""
    shape = [_int(dim) for dim in load.source.shape]
    if None in shape:
        return None
    offset = sum(
        (analyzer.simplify(index).astype("int64") * math.prod(shape[d + 1 :]) for d, index in enumerate(load.indices)),
        tirx.const(0, "int64"),
    )
    coefs = [_int(c) for c in tvm.sym.detect_linear_equation(analyzer.simplify(offset), axes)]
    return coefs[:-1] if coefs and None not in coefs else None


def _int(expr) -> int | None:
    return int(expr.value) if isinstance(expr, tirx.IntImm) else None


def _vectorize_inner(sch: Schedule, loop, extent: int, cfg: CpuScheduleCfg) -> None:
    """Vectorise one piece of a partitioned innermost loop when it is short. A longer piece stays a serial loop
    (``split`` refuses a loop that does not start at 0); without the selection LLVM can vectorise it itself."""
    if 1 < extent <= 4 * cfg.lanes:
        sch.vectorize(loop)


_COMPARISONS = {tirx.LT: 0, tirx.GE: 0, tirx.LE: 1, tirx.GT: 1}  # cut = constant + offset for `var OP constant`


def _inner_cuts(sch: Schedule, block, extent: int) -> list[int]:
    """Sorted positions in ``(0, extent)`` where a selection of the block's body on its innermost axis (compared
    with a constant) changes value."""
    stmt = sch.get(block)
    var = stmt.iter_vars[-1].var
    select = tirx.op.if_then_else(tirx.Var("c", "bool"), 0.0, 0.0).op
    cuts = set()
    for node in _subexpressions(stmt.body):
        if isinstance(node, tvm.ir.Call) and node.op.same_as(select):
            cut = _comparison_cut(node.args[0], var)
            if cut is not None and 0 < cut < extent:
                cuts.add(cut)
    return sorted(cuts)


def _subexpressions(node):
    """``node`` and every expression below it (a block body is a buffer store of one expression)."""
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        for field in ("a", "b", "value", "condition", "true_value", "false_value"):
            child = getattr(node, field, None)
            if isinstance(child, tvm.ir.expr.Expr):
                stack.append(child)
        for field in ("args", "indices"):
            stack.extend(c for c in getattr(node, field, ()) if isinstance(c, tvm.ir.expr.Expr))


def _comparison_cut(cond, var) -> int | None:
    """For ``var OP c`` or ``c OP var`` (OP one of < <= > >=, c a constant): the first index at which ``cond``
    differs from its value at the index before; None for any other condition."""
    offset = _COMPARISONS.get(type(cond))
    if offset is None:
        return None
    a, b = cond.a, cond.b
    if isinstance(a, tirx.Var) and a.same_as(var) and isinstance(b, tirx.IntImm):
        return int(b.value) + offset
    if isinstance(b, tirx.Var) and b.same_as(var) and isinstance(a, tirx.IntImm):
        return int(a.value) + 1 - offset  # c < var  <=>  var > c;  c <= var  <=>  var >= c
    return None


def _contiguous_inner_axis(sch: Schedule, block, n_spatial: int) -> bool:
    """Whether the innermost spatial axis indexes the last dimension of the output and of some input.

    Legalized blocks bind each axis to its own loop, so block axis ``i`` stands for loop ``i``.
    """
    stmt = sch.get(block)
    last = stmt.iter_vars[n_spatial - 1].var

    def uses_last(region) -> bool:
        return any(v.same_as(last) for v in _vars_in(region.region[-1].min))

    return uses_last(stmt.writes[0]) and any(uses_last(r) for r in stmt.reads)


def _column_tile(sch: Schedule, block, cfg: CpuScheduleCfg, n_spatial: int) -> int | None:
    """Vector columns of a register tile: a divisor of the innermost output axis (None: none fits)."""
    cols = _extent(sch, sch.get_loops(block)[n_spatial - 1])
    if cols is None:
        return None
    width = cfg.lanes * cfg.tile_vectors
    return next((w for w in (width, cfg.lanes, cfg.lanes // 2) if w and cols % w == 0), cols if cols <= width else None)


def _schedule_tiled_reduction(sch: Schedule, block, cfg: CpuScheduleCfg, n_spatial: int, col_tile: int) -> None:
    """Step 3: ``[outer spatial, row tiles, col tiles](parallel) -> reductions -> MR(unroll) x NR*lanes(vector)``."""
    loops = sch.get_loops(block)
    spatial, reduce = loops[:n_spatial], loops[n_spatial:]
    co, ci = sch.split(spatial[-1], [None, col_tile])
    outer = list(spatial[:-1])
    row_tile = []
    if outer:
        rows = _extent(sch, outer[-1]) or 1
        mr = next((m for m in cfg.tile_rows if rows % m == 0), 1)
        ro, ri = sch.split(outer[-1], [None, mr])
        outer, row_tile = [*outer[:-1], ro], [ri]
    sch.reorder(*outer, co, *reduce, *row_tile, ci)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, co)
    par = sch.fuse(*outer, co) if outer else co
    sch.parallel(par)
    for loop in row_tile:
        sch.unroll(loop)
    sch.vectorize(ci)
    # the accumulator's write-back loops sit below the parallel loop
    depth = len(sch.get_loops(block)) - len(reduce) - len(row_tile) - 1
    acc_inner = sch.get_loops(acc)[depth:]
    if acc_inner:
        sch.vectorize(acc_inner[-1])
    sch.decompose_reduction(block, reduce[0])


def _schedule_row_reduction(sch: Schedule, block, n_spatial: int) -> None:
    """Step 4: parallelise the spatial loops, keep the reduction inner."""
    loops = sch.get_loops(block)[:n_spatial]
    sch.parallel(sch.fuse(*loops) if len(loops) > 1 else loops[0])


def _schedule_lane_reduction(sch: Schedule, block, n_spatial: int, lanes: int) -> None:
    """Step 4, vectorised: ``rows(parallel) -> [step -> lanes(vector)] -> combine the lanes``."""
    loops = sch.get_loops(block)
    rows = sch.fuse(*loops[:n_spatial]) if n_spatial > 1 else loops[0]
    _, lane = sch.split(loops[-1], [None, lanes])
    rf = sch.rfactor(lane, n_spatial)  # partial results [rows..., lane]; the block now combines them per row
    sch.compute_at(rf, rows)  # after the rfactor, ``rows`` is the loop of the block's own nest
    sch.parallel(rows)
    lane, step = sch.get_loops(rf)[-2:]
    sch.reorder(step, lane)
    sch.vectorize(lane)
    sch.decompose_reduction(rf, step)


def _reads_along_rows(sch: Schedule, block, n_spatial: int) -> bool:
    """Whether the block reduces over one axis that is the last index of every input it indexes with it, and
    appears nowhere else in them (a row reduction over contiguous rows: LayerNorm's, softmax's)."""
    stmt = sch.get(block)
    if len(stmt.iter_vars) != n_spatial + 1:
        return False
    k = stmt.iter_vars[-1].var
    for region in stmt.reads:
        *outer, last = [_uses(r.min, k) for r in region.region]
        if any(outer) or (last and not _is_var(region.region[-1].min, k)):
            return False
    return any(_is_var(r.region[-1].min, k) for r in stmt.reads)


def _reduction_lanes(sch: Schedule, block, cfg: CpuScheduleCfg) -> int | None:
    """Vector lanes for a row reduction (a block for which :func:`_reads_along_rows` holds) when ``cfg.lanes`` or
    half of it divides its extent; None otherwise.

    Each lane keeps a partial result, and the lanes are combined at the end of the row, which reorders a float
    sum: it is exact up to rounding. An extent no lane count divides is left to :func:`_row_lanes`: rfactor on a
    split with a remainder loses the split's bound check under ``compute_at`` (TVM 0.27) and reads past the row.
    """
    extent = _extent(sch, sch.get_loops(block)[-1])
    return next((n for n in (cfg.lanes, cfg.lanes // 2) if extent and n > 1 and extent % n == 0 and extent > n), None)


def _row_lanes(sch: Schedule, block, cfg: CpuScheduleCfg, n_spatial: int) -> int | None:
    """Vector lanes across rows for a row reduction that :func:`_reduction_lanes` leaves (its length no lane count
    divides, as softmax's 53 tokens, or at most half a vector): a lane count that divides the number of rows (known
    at compile time), or None."""
    rows = math.prod(_extent(sch, loop) or 0 for loop in sch.get_loops(block)[:n_spatial])
    return next((n for n in (cfg.lanes, cfg.lanes // 2, cfg.lanes // 4) if n > 1 and rows % n == 0 and rows > n), None)


def _schedule_rows_in_lanes(sch: Schedule, block, n_spatial: int, lanes: int) -> None:
    """Step 4, vectorised across rows: ``row groups(parallel) -> reduction -> lanes(vector)``: each lane reduces its
    own row in the original order (bit-identical to the serial loop); the loads gather along a column of rows."""
    loops = sch.get_loops(block)
    rows = sch.fuse(*loops[:n_spatial]) if n_spatial > 1 else loops[0]
    groups, lane = sch.split(rows, [None, lanes])
    sch.reorder(groups, loops[-1], lane)
    sch.parallel(groups)
    sch.vectorize(lane)
    sch.decompose_reduction(block, loops[-1])


def _is_var(expr, var) -> bool:
    return isinstance(expr, tirx.Var) and expr.same_as(var)


def _uses(expr, var) -> bool:
    return any(v.same_as(var) for v in _vars_in(expr))


class Unschedulable(ValueError):
    """The generic schedule has no rule for this block."""


def _schedule_block(sch: Schedule, name: str, cfg: CpuScheduleCfg) -> None:
    block = sch.get_sblock(name)
    types = _iter_types(sch, block)
    if len(sch.get_loops(block)) != len(types):
        raise Unschedulable("its loops no longer map one-to-one to its axes")
    n_spatial = types.index(_REDUCE) if _REDUCE in types else len(types)
    if any(t not in (_SPATIAL, _REDUCE) for t in types) or _SPATIAL in types[n_spatial:]:
        raise Unschedulable(f"axis kinds {types} are not spatial axes followed by reductions")
    if not n_spatial:
        raise Unschedulable("a full reduction (no spatial axis to parallelise)")
    if n_spatial == len(types):
        _schedule_spatial(sch, block, cfg)
        return
    along_rows = _reads_along_rows(sch, block, n_spatial)
    if along_rows and (lanes := _reduction_lanes(sch, block, cfg)):
        _schedule_lane_reduction(sch, block, n_spatial, lanes)
    elif along_rows and (lanes := _row_lanes(sch, block, cfg, n_spatial)):
        _schedule_rows_in_lanes(sch, block, n_spatial, lanes)
    elif _contiguous_inner_axis(sch, block, n_spatial) and (col_tile := _column_tile(sch, block, cfg, n_spatial)):
        _schedule_tiled_reduction(sch, block, cfg, n_spatial, col_tile)
    else:
        _schedule_row_reduction(sch, block, n_spatial)


def schedule_primfunc(
    func: tirx.PrimFunc, cfg: CpuScheduleCfg, serial: list[str] | None = None, name: str = "main"
) -> tirx.PrimFunc:
    """The scheduled version of one unscheduled PrimFunc ``name``. A block that cannot be scheduled stays as it
    is (serial): a warning names it, and ``serial`` (when given) gets ``"<name>/<block>"`` appended."""
    sch = Schedule(func)
    try:
        _inline_producers(sch)
    except _FAILURES as err:
        logger.warning("%s: producers not inlined (%s)", name, _first_line(err))
        sch = Schedule(func)
    blocks = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    for block in blocks:
        trial = sch.copy()
        try:
            _schedule_block(trial, block, cfg)
        except _FAILURES as err:
            logger.warning("%s: block %s left serial: %s", name, block, _first_line(err))
            if serial is not None:
                serial.append(f"{name}/{block}")
            continue
        sch = trial
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def needs_schedule(func) -> bool:
    """True for a PrimFunc nobody scheduled that is not an opaque kernel."""
    if not isinstance(func, tirx.PrimFunc):
        return False
    attrs = func.attrs or {}
    return not attrs.get("tirx.is_scheduled") and int(attrs.get("op_pattern", 0)) != OPAQUE


@tvm.transform.module_pass(opt_level=0, name="GenericCpuSchedule")
class GenericCpuSchedule:
    """Module pass: schedule every unscheduled, non-opaque PrimFunc with :func:`schedule_primfunc`; returns a new
    module (the input is not changed). ``serial`` lists the blocks of the last run left serial."""

    def __init__(self, cfg: CpuScheduleCfg):
        self.cfg = cfg
        self.serial: list[str] = []

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        self.serial = []
        functions = dict(mod.functions_items())
        for gv, func in functions.items():
            if needs_schedule(func):
                functions[gv] = schedule_primfunc(func, self.cfg, self.serial, gv.name_hint)
        return tvm.IRModule(functions, attrs=mod.attrs, global_infos=mod.global_infos)
