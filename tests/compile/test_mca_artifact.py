"""scripts/mca_artifact.py finds the hot loop of every binary kernel in a stripped aarch64 artifact."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tvm
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-objdump") is None or shutil.which("llvm-mca") is None,
    reason="needs aarch64-linux-gnu-objdump (binutils-aarch64-linux-gnu) and llvm-mca (llvm)",
)
def test_every_binary_kernel_of_an_rpi5_artifact_gets_a_row(compiled):
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("mca_artifact", ROOT / "scripts" / "mca_artifact.py")
    mca_artifact = sys.modules["mca_artifact"] = importlib.util.module_from_spec(spec)  # for its dataclass
    spec.loader.exec_module(mca_artifact)
    _, out, meta = compiled("binary", target="rpi5")
    rows = mca_artifact.table(out)
    assert {r["kernel"] for r in rows} == {n for n, k in meta.kernels.items() if k["bit_macs"]}
    measured = [r for r in rows if "error" not in r]
    # a fully unrolled tiny kernel has no loop: 6 of 25 in this small model (4-row dense, 8x8 convs, ...), more
    # than before the rpi5 micro-kernel, whose shorter reduction code LLVM unrolls whole
    assert len(measured) >= 0.7 * len(rows)
    assert all(r["cnt"] >= 1 and 0 < r["bit_mac_per_cycle"] <= 1.05 * mca_artifact.A76_CEILING for r in measured)
