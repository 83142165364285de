"""x86 tile configs: AVX-512 with VPOPCNTDQ (vpopcntq zmm), plain AVX-512, AVX2.

Pick the CPU with an explicit ``mcpu`` (e.g. ``znver4``): ``native`` and a bare ``llvm`` target do
not enable AVX-512 in TVM 0.27. Without VPOPCNTDQ, LLVM lowers the popcount to a vpshufb nibble
table plus vpsadbw (about 3x slower), which still vectorises over 512 or 256 bits.
"""

from __future__ import annotations

from dataclasses import replace

from tvm.target import Target, codegen

from .epilogue import sign_word_intrin
from .generic import TileConfig

__all__ = ["AVX512_VPOPCNT", "AVX512", "AVX2", "config"]

# 32 zmm: 28 int64x8 accumulators (MR=7, NR=4) + NR weight vectors; activations are
# broadcast memory operands.
AVX512_VPOPCNT = TileConfig(
    "x86-avx512-vpopcntdq",
    lanes=8,
    acc_regs=28,
    pack_lanes=8,
    sign_word=sign_word_intrin,
    float_dot=True,
    transposed_stores=True,
    # measured with AVX-512 VPOPCNTDQ (znver4) and taken as it is by the other two; fc1 alone: w=3 stage 2 (12
    # words) 0.87x, stage 1 (6) 0.8-0.9x, w=1 stage 2 (4) 0.87x; w=3 stage 0 (3) 1.05-1.075x, w=1 stage 1 (2)
    # 0.98-1.05x
    workspace_tile_words=4,
)
AVX512 = replace(AVX512_VPOPCNT, name="x86-avx512", acc_regs=24)
AVX2 = replace(AVX512_VPOPCNT, name="x86-avx2", lanes=4, acc_regs=12)  # 16 ymm


def _is_x86(target: Target) -> bool:
    triple = str(target.attrs.get("mtriple", ""))
    return (
        target.kind.name == "llvm"
        and "arm_cpu" not in target.keys
        and (not triple or triple.startswith(("x86", "i686")))
    )


def config(target: Target) -> TileConfig | None:
    """The x86 config for ``target``, or None when it is not an x86 target with AVX2 or better."""
    if not _is_x86(target):
        return None
    for features, cfg in ((["avx512f", "avx512vpopcntdq"], AVX512_VPOPCNT), (["avx512f"], AVX512), (["avx2"], AVX2)):
        if codegen.target_has_features(features, target):
            return cfg
    return None
