"""A TIR lowering pass: the strided vector loads of a transposing tile become contiguous loads and a register
transpose.

A transposed read (a map ``(C, H*W)`` read into tokens ``(H*W, C)``) vectorised along the output's contiguous axis
loads each vector's ``L`` lanes from ``L`` different rows of the input: LLVM emits that as ``L`` scalar loads and
inserts per vector (about 60 instructions for 16 floats with AVX-512). The schedules (:mod:`bhvit.compile.schedule`
for the FP functions, :mod:`.stencil_add` for the stencil's tokens) tile such a read as ``R`` x ``L`` (``R`` a
power of two up to ``L``) and mark the tile's loop over ``R`` with :data:`ANNOTATION`. After TVM's TIR pipeline,
this pass replaces each marked loop whose body reads ``x[Ramp(base + k, stride, L)]`` (``k`` the loop variable) by
``L`` contiguous loads of ``R`` elements ``x[Ramp(base + j * stride, 1, R)]``, their transpose in registers
(:func:`_transpose`: with AVX-512 one ``vpermt2ps`` per vector and round, 64 for 16 x 16) and the loop
body unrolled, iteration ``k`` reading the transpose's vector ``k``. Pure data movement: the results are
bit-identical.

The mirror case, a marked loop whose body is one strided vector store ``y[Ramp(base + k, stride, L)] = value``
(an NCHW conv tile whose rows are the output's rows), becomes the ``R`` values, log2 R rounds of the same
interleave and ``L`` contiguous stores of ``R`` elements (:func:`_transposed_store`).

A marked loop is left as it is where the pattern does not hold: a strided load under a condition (a concatenation's
``if_then_else``, whose untaken side may be out of bounds), a body that writes the buffer it reads or defines a
variable (unrolled, the definition would repeat), a store whose value reads the buffer it writes, or a loop that
does not start at 0.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
import tvm.sym
import tvm_ffi
from tvm import tirx
from tvm.ir.expr import TensorLoad
from tvm.tirx.compilation_pipeline import get_tir_pipeline, register_tir_pipeline

__all__ = ["ANNOTATION", "PIPELINE", "CACHE_LINE_BYTES", "tiles_per_line", "register_transpose"]

ANNOTATION = "bhvit.register_transpose"  # on the loop over the R rows of an R x L transposing tile
PIPELINE = "bhvit"  # TVM's TIR pipeline followed by :func:`register_transpose` (registered on import)
CACHE_LINE_BYTES = 64  # the schedules group the tiles that share a line of the transposed input


def _transpose(runs: list, bind: Callable[[tirx.PrimExpr], tirx.PrimExpr]) -> list:
    """``L`` vectors of ``R`` lanes (``R`` | ``L``, both powers of two, ``R`` > 1) -> ``R`` vectors of ``L`` lanes,
    lane ``j`` of result ``k`` = lane ``k`` of ``runs[j]``. The runs are first concatenated ``L / R`` at a time
    into ``R`` full vectors; then each of log2 L rounds maps vectors ``i`` and ``i + R/2`` to the interleaving of
    their low halves (result ``2i``) and of their high halves (``2i + 1``). A round rotates the bits of (vector,
    lane) left by one, so log2 L rounds turn (run, element) into (element, run). ``bind`` names each new vector
    (a variable, so that later rounds do not repeat the shuffles)."""
    count, per = len(runs), len(runs) // _lanes(runs[0])
    vectors = [
        bind(tirx.Shuffle(runs[v * per : (v + 1) * per], list(range(count)))) if per > 1 else runs[v]
        for v in range(count // per)
    ]
    for _ in range(count.bit_length() - 1):
        vectors = [bind(v) for v in _interleave(vectors)]
    return vectors


def _lanes(vector: tirx.PrimExpr) -> int:
    return int(vector.ty.dtype.lanes)


def _interleave(vectors: list) -> list[tirx.PrimExpr]:
    """One round of :func:`_transpose`."""
    n, width = len(vectors), _lanes(vectors[0])
    half, lane_half = n // 2, width // 2
    return [
        tirx.Shuffle(
            [vectors[i], vectors[i + half]], [s * width + h * lane_half + t for t in range(lane_half) for s in (0, 1)]
        )
        for i in range(half)
        for h in (0, 1)
    ]


def _strided_loads(body: tirx.Stmt, k: tirx.Var, rows: int) -> list[TensorLoad] | None:
    """The loads of ``body`` whose index is ``Ramp(base, stride, lanes)`` with ``base`` moving by one per step of
    ``k``, ``|stride| > 1`` and ``lanes`` a power-of-two multiple of ``rows``; None if any such load sits under a
    condition, or the body writes a loaded buffer or defines a variable (a loop, a binding)."""
    found: list[TensorLoad] = []
    conditional: list[TensorLoad] = []
    written, defined = set(), set()
    guarded = tirx.op.if_then_else(tirx.Var("c", "bool"), 0.0, 0.0).op

    def visit(node):
        if isinstance(node, tirx.BufferStore):
            written.add(node.buffer)
        elif isinstance(node, (tirx.LetStmt, tirx.Let)):  # LetStmt: TVM's Bind statement
            defined.add(node.var)
        elif isinstance(node, tirx.For):
            defined.add(node.loop_var)
        elif isinstance(node, tirx.IfThenElse) or (isinstance(node, tvm.ir.Call) and node.op.same_as(guarded)):
            tvm_ffi.structural_walk(node, lambda inner: collect(inner, conditional))
        collect(node, found)

    def collect(node, into):
        if isinstance(node, TensorLoad) and _tile_index(node.indices, k, rows):
            into.append(node)

    tvm_ffi.structural_walk(body, visit)
    if not found or conditional or defined:  # unrolled, a definition in the body would be repeated
        return None
    return None if any(load.source in written for load in found) else found


def _tile_index(indices, k: tirx.Var, rows: int) -> bool:
    """Whether ``indices`` is one ``Ramp(base, stride, lanes)`` of a tile's row ``k``: ``base`` moving by one per
    step of ``k``, a constant ``|stride| > 1`` and ``lanes`` a power-of-two multiple of ``rows`` (> 1)."""
    if len(indices) != 1 or not isinstance(ramp := indices[0], tirx.Ramp):
        return False
    lanes = int(ramp.lanes)
    if rows < 2 or lanes % rows or lanes & (lanes - 1):
        return False
    if not isinstance(ramp.stride, tirx.IntImm) or abs(int(ramp.stride)) <= 1:
        return False
    coef = tvm.sym.detect_linear_equation(tvm.sym.Analyzer().simplify(ramp.base), [k])
    return len(coef) == 2 and isinstance(coef[0], (int, tirx.IntImm)) and int(coef[0]) == 1


def _at_zero(expr, k: tirx.Var):
    """``expr`` at ``k = 0``, simplified."""
    return tvm.sym.Analyzer().simplify(_substitute(expr, {k: tirx.const(0, k.ty)}))


def tiles_per_line(tiles: int, rows: int, line_elements: int) -> int:
    """How many consecutive tiles of ``rows`` rows share the cache lines of their input (``line_elements`` per
    line): the largest divisor of ``tiles`` up to ``line_elements / rows``. The schedules run them one after
    another, so each line is read once."""
    return max(d for d in range(1, max(1, line_elements // rows) + 1) if tiles % d == 0)


def _substitute(node, mapping: dict):
    """``node`` with each variable of ``mapping`` (keyed by variable) replaced."""
    return tvm_ffi.structural_map(node, (tirx.Var, lambda v: mapping.get(v, v)))


def _inline_binds(body: tirx.Stmt) -> tirx.Stmt:
    """``body`` with the bindings at its top level (TIR's common-subexpression pass puts the address terms there)
    substituted into the statements after them; unchanged where a binding reads memory (moved past a store, the
    read could see another value)."""
    if not isinstance(body, tirx.SeqStmt):
        return body
    values, stmts = {}, []
    for stmt in body.seq:
        if isinstance(stmt, tirx.LetStmt) and _reads(stmt.value):
            return body
        if isinstance(stmt, tirx.LetStmt):
            values[stmt.var] = _substitute(stmt.value, values)
        else:
            stmts.append(_substitute(stmt, values))
    return stmts[0] if len(stmts) == 1 else tirx.SeqStmt(stmts)


def _same_tile(load: TensorLoad, base0, other: TensorLoad, other_base0) -> bool:
    a, b = load.indices[0], other.indices[0]
    return (
        load.source.same_as(other.source)
        and int(a.stride.value) == int(b.stride.value)
        and int(a.lanes) == int(b.lanes)
        and tvm_ffi.structural_equal(base0, other_base0)
    )


def _reads(expr, buffer=None) -> bool:
    """Whether ``expr`` loads from ``buffer`` (from any buffer when None)."""
    found = []

    def visit(node):
        if isinstance(node, TensorLoad) and (buffer is None or node.source.same_as(buffer)):
            found.append(node)

    tvm_ffi.structural_walk(expr, visit)
    return bool(found)


class _Bindings:
    """Calling it binds a value to a new variable (so that each shuffle is computed once); :meth:`before` puts the
    bindings, in order, ahead of the statements that use them."""

    def __init__(self):
        self.pairs: list[tuple[tirx.Var, tirx.PrimExpr]] = []

    def __call__(self, value: tirx.PrimExpr) -> tirx.Var:
        var = tirx.Var(f"transpose{len(self.pairs)}", value.ty)
        self.pairs.append((var, value))
        return var

    def before(self, stmts: list[tirx.Stmt]) -> tirx.Stmt:
        return tirx.SeqStmt([*(tirx.LetStmt(var, value) for var, value in self.pairs), *stmts])


def _unrolled_transpose(loop: tirx.For) -> tirx.Stmt:
    k, rows = loop.loop_var, int(loop.extent)
    body = _inline_binds(loop.body)
    loads = _strided_loads(body, k, rows)
    if loads is None:
        return _transposed_store(loop, body)
    groups: list[tuple[TensorLoad, tirx.PrimExpr, tirx.Var]] = []  # (a load, its base at k = 0, its stand-in)
    stand_in = {}
    for load in loads:
        ramp = load.indices[0]
        base0 = _at_zero(ramp.base, k)
        group = next((g for g in groups if _same_tile(g[0], g[1], load, base0)), None)
        if group is None:
            group = (load, base0, tirx.Var(f"transposed{len(groups)}", load.ty))
            groups.append(group)
        stand_in[load] = group[2]
    body = tvm_ffi.structural_map(body, (TensorLoad, lambda node: stand_in.get(node, node)))
    bind, columns = _Bindings(), {}
    for load, base0, var in groups:
        ramp = load.indices[0]
        lines = [
            tirx.BufferLoad(load.source, [tirx.Ramp(base0 + j * ramp.stride, 1, rows)]) for j in range(int(ramp.lanes))
        ]
        columns[var] = _transpose(lines, bind)
    iterations = [
        _substitute(body, {k: tirx.const(i, k.ty), **{var: cols[i] for var, cols in columns.items()}})
        for i in range(rows)
    ]
    return bind.before(iterations)


def _transposed_store(loop: tirx.For, body: tirx.Stmt) -> tirx.Stmt:
    """A loop whose body is one strided vector store ``y[Ramp(base + k, stride, L)] = value`` (a tile written
    across the output's rows: an NCHW conv epilogue) as its ``R`` values, their transpose in registers and ``L``
    contiguous stores of ``R`` elements; the loop itself where the body is anything else or reads ``y``."""
    k, rows = loop.loop_var, int(loop.extent)
    if not isinstance(body, tirx.BufferStore) or not _tile_index(body.indices, k, rows):
        return loop
    if _reads(body.value, body.buffer):
        return loop
    ramp, bind = body.indices[0], _Bindings()
    values = [bind(_substitute(body.value, {k: tirx.const(i, k.ty)})) for i in range(rows)]
    for _ in range(rows.bit_length() - 1):
        values = [bind(v) for v in _interleave(values)]
    lanes, base0 = int(ramp.lanes), _at_zero(ramp.base, k)
    stores = [
        tirx.BufferStore(
            body.buffer,
            tirx.Shuffle([vector], list(range(p * rows, (p + 1) * rows))),
            [tirx.Ramp(base0 + (v * (lanes // rows) + p) * ramp.stride, 1, rows)],
        )
        for v, vector in enumerate(values)
        for p in range(lanes // rows)
    ]
    return bind.before(stores)


@tirx.transform.prim_func_pass(opt_level=0, name="bhvit.RegisterTranspose")
def register_transpose(func: tirx.PrimFunc, _mod, _ctx) -> tirx.PrimFunc:
    """Rewrite every loop marked :data:`ANNOTATION` whose body matches (see the module docstring)."""

    def rewrite(loop):
        const = all(isinstance(e, tirx.IntImm) for e in (loop.min, loop.extent))
        if ANNOTATION in loop.annotations and const and int(loop.min) == 0:
            return _unrolled_transpose(loop)
        return loop

    return func.with_body(tvm_ffi.structural_map(func.body, (tirx.For, rewrite)))


def _pipeline():
    lower, finalize_host, finalize_device = get_tir_pipeline("default")
    return tvm.transform.Sequential([lower, register_transpose]), finalize_host, finalize_device


register_tir_pipeline(PIPELINE, _pipeline)
