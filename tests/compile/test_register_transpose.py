"""The register-transpose lowering pass: strided vector loads of a marked tile become contiguous loads and shuffles,
bit-identical to the loads they replace; loops it cannot prove safe are left as they are."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

tvm = pytest.importorskip("tvm")
import tvm_ffi  # noqa: E402
from bhvit.compile.kernels.schedule.register_transpose import (  # noqa: E402
    ANNOTATION,
    PIPELINE,
    register_transpose,
)
from tvm import tirx  # noqa: E402
from tvm.script import tirx as T  # noqa: E402


def _tile(rows: int, lanes: int, guarded=False, in_place=False, inner_loop=False, store_across=False):
    """``b[i, :] = a[:, i]`` for an ``a`` of ``lanes`` rows of ``rows`` floats, as the lowered loop the schedules
    mark: row loop ``i`` over ``rows``, each iteration one strided vector load of ``lanes`` lanes. ``store_across``:
    ``b[:, i] = 2 * a[i, :]`` instead, each iteration storing one vector across ``lanes`` rows of ``b`` (an NCHW
    conv's tile epilogue)."""

    @T.prim_func
    def tile(a: T.handle, b: T.handle):
        T.func_attr({"global_symbol": "main"})
        A = T.match_buffer(a, (rows * lanes,), "float32")
        B = T.match_buffer(b, (rows * lanes,), "float32")
        for i in T.serial(rows, annotations={ANNOTATION: 1}):
            if guarded:
                B[T.Ramp(i * lanes, 1, lanes)] = T.if_then_else(
                    i < rows - 1, A[T.Ramp(i, rows, lanes)], T.Broadcast(T.float32(0), lanes)
                )
            elif in_place:
                A[T.Ramp(i * lanes, 1, lanes)] = A[T.Ramp(i, rows, lanes)]
            elif inner_loop:
                for j in range(2):
                    B[T.Ramp(i * lanes, 1, lanes)] = A[T.Ramp(i, rows, lanes)] * T.Cast("float32", j)
            elif store_across:
                B[T.Ramp(i, rows, lanes)] = A[T.Ramp(i * lanes, 1, lanes)] * T.float32(2)
            else:
                B[T.Ramp(i * lanes, 1, lanes)] = A[T.Ramp(i, rows, lanes)]

    return tvm.IRModule({"main": tile})


def _two_tiles(rows: int, lanes: int, offset: int, stride: int) -> tvm.IRModule:
    """``b[i, :] = a[offset + i :: stride][:lanes] + c[:, i] + c[:, i]``: two inputs, one read at an offset with a
    stride wider than the tile, and the same load of ``c`` twice (one group)."""

    @T.prim_func
    def tiles(a: T.handle, c: T.handle, b: T.handle):
        T.func_attr({"global_symbol": "main"})
        A = T.match_buffer(a, (offset + stride * lanes,), "float32")
        C = T.match_buffer(c, (rows * lanes,), "float32")
        B = T.match_buffer(b, (rows * lanes,), "float32")
        for i in T.serial(rows, annotations={ANNOTATION: 1}):
            B[T.Ramp(i * lanes, 1, lanes)] = (
                A[T.Ramp(offset + i, stride, lanes)] + C[T.Ramp(i, rows, lanes)] + C[T.Ramp(i, rows, lanes)]
            )

    return tvm.IRModule({"main": tiles})


def _strides(func) -> list[int]:
    """The strides of every vector load and store in ``func``."""
    found = []

    def visit(node):
        if isinstance(node, tirx.Ramp):
            found.append(int(node.stride))

    tvm_ffi.structural_walk(func.body, visit)
    return found


@pytest.mark.parametrize("rows, lanes", [(4, 4), (16, 16), (4, 16), (2, 8), (8, 8)])
def test_a_marked_tile_is_transposed_in_registers_and_equals_the_strided_loads(rows, lanes):
    mod = _tile(rows, lanes)
    assert any(s != 1 for s in _strides(mod["main"]))
    assert all(s == 1 for s in _strides(register_transpose(mod)["main"]))  # every load is contiguous now
    lib = tvm.tirx.build(mod, target="llvm", pipeline=PIPELINE)
    a = np.random.default_rng(rows * lanes).standard_normal(rows * lanes).astype("float32")
    b = tvm.runtime.empty((rows * lanes,), "float32")
    lib["main"](tvm.runtime.tensor(a), b)
    np.testing.assert_array_equal(b.numpy().reshape(rows, lanes), a.reshape(lanes, rows).T)


def test_tiles_of_two_inputs_at_an_offset_are_each_transposed_once():
    rows, lanes, offset, stride = 4, 8, 5, 7
    mod = _two_tiles(rows, lanes, offset, stride)
    lowered = register_transpose(mod)["main"]
    assert all(s == 1 for s in _strides(lowered))
    assert lowered.script().count("T.Shuffle") == 2 * (4 + 3 * 4)  # per input: 4 pairs of runs joined, 3 rounds of 4
    lib = tvm.tirx.build(mod, target="llvm", pipeline=PIPELINE)
    rng = np.random.default_rng(7)
    a = rng.standard_normal(offset + stride * lanes).astype("float32")
    c = rng.standard_normal(rows * lanes).astype("float32")
    b = tvm.runtime.empty((rows * lanes,), "float32")
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(c), b)
    columns = a[offset : offset + stride * lanes].reshape(lanes, stride)[:, :rows].T
    c_columns = c.reshape(lanes, rows).T
    np.testing.assert_array_equal(b.numpy().reshape(rows, lanes), columns + c_columns + c_columns)


@pytest.mark.parametrize("rows, lanes", [(2, 8), (4, 8), (4, 16), (8, 8), (16, 16)])
def test_a_marked_tile_stored_across_rows_is_transposed_in_registers(rows, lanes):
    mod = _tile(rows, lanes, store_across=True)
    assert all(s == 1 for s in _strides(register_transpose(mod)["main"]))
    lib = tvm.tirx.build(mod, target="llvm", pipeline=PIPELINE)
    a = np.random.default_rng(rows + lanes).standard_normal(rows * lanes).astype("float32")
    b = tvm.runtime.empty((rows * lanes,), "float32")
    lib["main"](tvm.runtime.tensor(a), b)
    np.testing.assert_array_equal(b.numpy().reshape(lanes, rows), (a.reshape(rows, lanes) * 2).T)


@pytest.mark.parametrize("case", ["guarded", "in_place", "inner_loop"])
def test_a_tile_it_cannot_prove_safe_is_left_alone(case):
    """A strided load under ``if_then_else`` (its untaken side may lie outside the buffer), from a buffer the loop
    writes (hoisting the loads would read values the loop has overwritten) or in a body that defines a variable
    (unrolled, the definition would be repeated) keeps its loop."""
    mod = _tile(4, 4, **{case: True})
    assert tvm_ffi.structural_equal(register_transpose(mod)["main"], mod["main"])


def test_an_avx512_build_shuffles_instead_of_inserting_lanes():
    """With AVX-512 a 16 x 16 tile is two-source permutes (64, one per vector and round); built without the pass,
    each lane is inserted."""
    target = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})
    plain, shuffled = (
        tvm.tirx.build(_tile(16, 16), target=target, pipeline=p).inspect_source("asm") for p in ("default", PIPELINE)
    )
    assert "vinsertps" in plain and "vpermt2ps" not in plain
    assert "vinsertps" not in shuffled and shuffled.count("vpermt2ps") + shuffled.count("vpermi2ps") >= 48
