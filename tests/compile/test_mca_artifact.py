"""scripts/mca_artifact.py finds the hot loop of every binary kernel in a stripped aarch64 artifact."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tvm
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def m():
    """scripts/mca_artifact.py, loaded once."""
    spec = importlib.util.spec_from_file_location("mca_artifact", ROOT / "scripts" / "mca_artifact.py")
    mca_artifact = sys.modules["mca_artifact"] = importlib.util.module_from_spec(spec)  # for its dataclass
    spec.loader.exec_module(mca_artifact)
    return mca_artifact


# (case, instructions as (op, args), the code addresses ``_references`` must find)
_ADRP_CASES = {
    # a rewritten register (or one a call clobbers) no longer holds its page: a later ``add`` on it names nothing
    # (such a false reference once cut a kernel's loop in two)
    "rewritten-or-clobbered": (
        [
            ("adrp", "x0, 69000 <__tvm_ffi_k+0x10>"),
            ("add", "x0, x0, #0x80"),
            ("adrp", "x1, 6a000 <__tvm_ffi_k+0x20>"),
            ("bl", "5000 <__tvm_ffi_k+0x30>"),
            ("add", "x1, x1, #0x40"),
            ("adrp", "x2, 6b000 <__tvm_ffi_k+0x40>"),
            ("ldr", "x2, [x3]"),
            ("add", "x2, x2, #0x8"),
        ],
        {0x69080, 0x5000},
    ),
    # a store or compare only reads its first register, a call keeps x19-x28, and writing ``wN`` rewrites ``xN``
    "kept-or-w-written": (
        [
            ("adrp", "x0, 69000 <__tvm_ffi_k+0x10>"),
            ("str", "x0, [sp, #8]"),
            ("cmp", "x0, #0x1"),
            ("add", "x0, x0, #0x80"),
            ("adrp", "x19, 6a000 <__tvm_ffi_k+0x20>"),
            ("bl", "5000 <__tvm_ffi_k+0x30>"),
            ("add", "x19, x19, #0x40"),
            ("adrp", "x8, 6b000 <__tvm_ffi_k+0x40>"),
            ("mov", "w8, #0x1"),
            ("add", "x8, x8, #0x8"),
        ],
        {0x69080, 0x6A040, 0x5000},
    ),
}


@pytest.mark.parametrize("case", list(_ADRP_CASES))
def test_an_adrp_page_pairs_with_an_add_only_while_its_register_holds_it(m, case):
    ops, expected = _ADRP_CASES[case]
    code = [m.Insn(0x100 + 4 * i, op, args) for i, (op, args) in enumerate(ops)]
    assert m._references(code) == expected


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-objdump") is None or shutil.which("llvm-mca") is None,
    reason="needs aarch64-linux-gnu-objdump (binutils-aarch64-linux-gnu) and llvm-mca (llvm)",
)
def test_every_binary_kernel_of_an_rpi5_artifact_gets_a_row(compiled, m):
    _, out, meta = compiled("binary", target="rpi5")
    rows = m.table(out)
    assert {r["kernel"] for r in rows} == {n for n, k in meta.kernels.items() if k["bit_macs"]}
    measured = [r for r in rows if "error" not in r]
    # a fully unrolled tiny kernel has no loop: 6 of 25 in this small model (4-row dense, 8x8 convs, ...), more
    # than before the rpi5 micro-kernel, whose shorter reduction code LLVM unrolls whole
    assert len(measured) >= 0.7 * len(rows)
    assert all(r["cnt"] >= 1 and 0 < r["bit_mac_per_cycle"] <= 1.05 * m.A76_CEILING for r in measured)
