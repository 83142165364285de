"""Registering a tensor intrinsic whose description and implementation one builder function makes."""

from __future__ import annotations

from collections.abc import Callable

from tvm import tirx
from tvm.s_tir import TensorIntrin

__all__ = ["register_intrin"]


def register_intrin(name: str, build: Callable[[bool], tirx.PrimFunc]) -> str:
    """Register (or replace) the tensor intrinsic ``name``: ``build(False)`` is its description, ``build(True)`` its
    implementation, so the two come from one definition. Returns ``name``."""
    TensorIntrin.register(name, build(False), build(True), override=True)
    return name
