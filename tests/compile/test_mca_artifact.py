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


def test_an_adrp_page_pairs_only_with_an_add_before_its_register_is_rewritten(m):
    """``adrp`` + ``add`` name a code address; once the register is rewritten (or a call clobbers it), a later
    ``add`` on it does not (a false reference cut a kernel's loop in two)."""
    code = [
        m.Insn(0x100, "adrp", "x0, 69000 <__tvm_ffi_k+0x10>"),
        m.Insn(0x104, "add", "x0, x0, #0x80"),
        m.Insn(0x108, "adrp", "x1, 6a000 <__tvm_ffi_k+0x20>"),
        m.Insn(0x10C, "bl", "5000 <__tvm_ffi_k+0x30>"),
        m.Insn(0x110, "add", "x1, x1, #0x40"),
        m.Insn(0x114, "adrp", "x2, 6b000 <__tvm_ffi_k+0x40>"),
        m.Insn(0x118, "ldr", "x2, [x3]"),
        m.Insn(0x11C, "add", "x2, x2, #0x8"),
    ]
    assert m._references(code) == {0x69080, 0x5000}


def test_an_adrp_page_survives_stores_compares_and_callee_saved_registers_but_not_a_w_write(m):
    """A store or compare only reads its first register, a call keeps x19-x28, and writing ``wN`` rewrites
    ``xN``."""
    code = [
        m.Insn(0x100, "adrp", "x0, 69000 <__tvm_ffi_k+0x10>"),
        m.Insn(0x104, "str", "x0, [sp, #8]"),
        m.Insn(0x108, "cmp", "x0, #0x1"),
        m.Insn(0x10C, "add", "x0, x0, #0x80"),
        m.Insn(0x110, "adrp", "x19, 6a000 <__tvm_ffi_k+0x20>"),
        m.Insn(0x114, "bl", "5000 <__tvm_ffi_k+0x30>"),
        m.Insn(0x118, "add", "x19, x19, #0x40"),
        m.Insn(0x11C, "adrp", "x8, 6b000 <__tvm_ffi_k+0x40>"),
        m.Insn(0x120, "mov", "w8, #0x1"),
        m.Insn(0x124, "add", "x8, x8, #0x8"),
    ]
    assert m._references(code) == {0x69080, 0x6A040, 0x5000}


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
