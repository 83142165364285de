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


def _tile(rows: int, lanes: int, guarded: bool = False, in_place: bool = False) -> tvm.IRModule:
    """``b[i, :] = a[:, i]`` for an ``a`` of ``lanes`` rows of ``rows`` floats, as the lowered loop the schedules
    mark: row loop ``i`` over ``rows``, each iteration one strided vector load of ``lanes`` lanes."""

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
            else:
                B[T.Ramp(i * lanes, 1, lanes)] = A[T.Ramp(i, rows, lanes)]

    return tvm.IRModule({"main": tile})


def _strides(func) -> list[int]:
    """The strides of every vector load in ``func``."""
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


@pytest.mark.parametrize("case", ["guarded", "in_place"])
def test_a_tile_it_cannot_prove_safe_is_left_alone(case):
    """A strided load under ``if_then_else`` (its untaken side may lie outside the buffer) or from a buffer the loop
    writes (hoisting the loads would read values the loop has overwritten) keeps its loop."""
    mod = _tile(4, 4, **{case: True})
    assert tvm_ffi.structural_equal(register_transpose(mod)["main"], mod["main"])


def test_an_avx512_build_shuffles_instead_of_inserting_lanes():
    """With AVX-512 a 16 x 16 tile is 64 two-source permutes; built without the pass, each lane is inserted."""
    target = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})
    plain, shuffled = (
        tvm.tirx.build(_tile(16, 16), target=target, pipeline=p).inspect_source("asm") for p in ("default", PIPELINE)
    )
    assert "vinsertps" in plain and "vpermt2ps" not in plain
    # LLVM picks vpermt2ps or vpermi2ps (which operand the result overwrites) per permute
    assert "vinsertps" not in shuffled and shuffled.count("vpermt2ps") + shuffled.count("vpermi2ps") == 64
