"""The rpi5 artifact runs under qemu-aarch64 as a Cortex-A76 and matches PyTorch (part of the default run where
the arm64 root exists, skipped with the reason where not; ``-m "not qemu"`` leaves it out)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("BHVIT_PI_ROOT", "/var/tmp/pi-root"))
SCRIPT = Path(__file__).parents[2] / "scripts" / "qemu_verify.py"

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.tvm,
    pytest.mark.skipif(
        not (ROOT / "usr/bin/python3.11").exists() or not shutil.which("qemu-aarch64-static"),
        reason=f"needs qemu-aarch64-static and an arm64 root at {ROOT} (BHVIT_PI_ROOT; built by scripts/qemu_setup.sh)",
    ),
    pytest.mark.skipif(not shutil.which("aarch64-linux-gnu-gcc"), reason="needs aarch64-linux-gnu-gcc"),
]


def test_rpi5_artifact_matches_pytorch_under_qemu(compiled):
    _, out, _ = compiled("binary", target="rpi5")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--root", str(ROOT)], capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASSED" in run.stdout
