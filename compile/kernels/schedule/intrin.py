"""Helpers for tensor intrinsics built with TVM's IR builder: registering one whose description and implementation
one function makes, and the strided buffer view they match."""

from __future__ import annotations

from collections.abc import Callable

from tvm import tirx
from tvm.s_tir import TensorIntrin
from tvm.script.ir_builder import tirx as B

__all__ = ["register_intrin", "row_view"]


def register_intrin(name: str, build: Callable[[bool], tirx.PrimFunc]) -> str:
    """Register (or replace) the tensor intrinsic ``name``: ``build(False)`` is its description, ``build(True)`` its
    implementation, so the two come from one definition. Returns ``name``."""
    TensorIntrin.register(name, build(False), build(True), override=True)
    return name


def row_view(handle: tirx.Var, rows: int, width: int, dtype: str) -> tirx.Buffer:
    """A (``rows``, ``width``) view of any buffer with contiguous rows, at any offset and row stride (inside an IR
    builder ``prim_func``)."""
    stride = tirx.Var("stride", "int32")
    return B.match_buffer(handle, (rows, width), dtype, strides=[stride, 1], offset_factor=1)
