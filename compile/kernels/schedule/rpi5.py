"""Raspberry Pi 5 (Cortex-A76, aarch64 NEON) tile config.

128-bit NEON holds two uint64 lanes. LLVM lowers ``popcount(<2 x i64>)`` to ``cnt.16b`` plus a
widening chain (``udot`` against ones with +dotprod, else ``uaddlp``) and folds the int64
accumulate into ``uadalp.2d``. 32 q registers: 16 accumulators leave room for operands and the
widening temporaries.
"""

from __future__ import annotations

from tvm.target import Target

from .generic import TileConfig
from .neon import tensorize_tile

__all__ = ["A76", "config"]

A76 = TileConfig(
    "rpi5-neon",
    lanes=2,
    acc_regs=16,
    pack_lanes=4,
    acc_dtype="int32",
    micro_kernel=tensorize_tile,
    min_rows=2,
    wide_epilogue=True,
    serial_columns=True,
)


def _is_aarch64(target: Target) -> bool:
    return "arm_cpu" in target.keys or str(target.attrs.get("mtriple", "")).startswith("aarch64")


def config(target: Target) -> TileConfig | None:
    """The NEON config for an aarch64 target, else None."""
    return A76 if target.kind.name == "llvm" and _is_aarch64(target) else None
