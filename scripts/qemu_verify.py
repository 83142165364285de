#!/usr/bin/env python3
"""Run an aarch64 (rpi5/rpi4) artifact under qemu user-mode emulation and compare it with PyTorch.

Check of the cross build (see scripts/README.md, "qemu check"): the artifact's model is rebuilt in PyTorch
on this host (from the checkpoint recorded in its metadata, or the same random init), logits for a few random
inputs are computed here, then an emulated Cortex-A76 (``QEMU_CPU=cortex-a76``, 16 KiB pages) loads the whole
artifact with this checkout's ``bhvit.device`` (checksums, CPU features, weights file, TVM runtime through
``tvm_ffi``) on the aarch64 wheels and must reproduce them.

Needs an arm64 Debian root with python3.11 and the aarch64 ``apache-tvm``/``numpy`` wheels in ``ROOT/opt/site``
(built by ``scripts/qemu_setup.sh``). Exit code 0: match; 1: mismatch; 2: setup missing.

    python3 scripts/qemu_verify.py artifacts/latest --root /var/tmp/pi-root
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from bhvit import device
from bhvit.compile.source import from_checkpoint
from bhvit.compile.verify import RTOL, compare
from bhvit.models import BHViT, BHViTCfg

GUEST = r"""
import os, sys, numpy as np
d = sys.argv[1]
sys.path.insert(0, os.path.join(d, "pkg"))
from bhvit.device.artifact import load_artifact
from bhvit.device.runtime import load_model
model = load_model(load_artifact(os.path.join(d, "artifact")))
out = [model(np.ascontiguousarray(x[None])) for x in np.load(os.path.join(d, "io.npz"))["inputs"]]
np.save(os.path.join(d, "got.npy"), np.stack(out))
print("emulated run done:", len(out), "inputs")
"""


def _stage_device_package(pkg: Path) -> None:
    """This checkout's ``bhvit.device`` (numpy-only for loading and running) as ``pkg/bhvit/device``."""
    (pkg / "bhvit").mkdir(parents=True)
    (pkg / "bhvit" / "__init__.py").write_text("")
    shutil.copytree(
        Path(device.__file__).parent, pkg / "bhvit" / "device", ignore=shutil.ignore_patterns("__pycache__", "samples")
    )


def reference(meta: dict, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs and PyTorch logits of the artifact's model."""
    model_meta = meta["model"]
    if model_meta.get("source") == "random-init":
        torch.manual_seed(model_meta.get("seed", 0))
        model = BHViT(BHViTCfg.from_dict(model_meta["config"])).eval()
    else:
        source = from_checkpoint(model_meta["source"])
        recorded = model_meta.get("source_sha256")
        if recorded and source.extra["source_sha256"] != recorded:
            raise SystemExit(
                f"{model_meta['source']} is not the checkpoint the artifact was built from (sha256 differs): "
                f"rebuild the artifact or restore the checkpoint"
            )
        model = source.model
    size = meta["preprocess"]["input_size"]
    x = torch.randn((n, 3, size, size), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return x.numpy(), model(x).numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--root", type=Path, default=Path("/var/tmp/pi-root"), help="arm64 root (default: %(default)s)")
    ap.add_argument("--site", default="/opt/site", help="site-packages inside the root (default: %(default)s)")
    ap.add_argument("--cpu", default="cortex-a76", help="QEMU_CPU (default: %(default)s)")
    ap.add_argument("--inputs", type=int, default=4, help="random inputs (default: %(default)s)")
    ap.add_argument("--rtol", type=float, default=RTOL, help="tolerance relative to max |logit| (default: %(default)s)")
    args = ap.parse_args()

    meta = json.loads((args.artifact / "metadata.json").read_text())
    if meta["target"]["arch"] != "aarch64" or meta["runtime"] != "tvm":
        print(f"{args.artifact} is not an aarch64 TVM artifact (arch {meta['target']['arch']})", file=sys.stderr)
        return 2
    qemu = shutil.which("qemu-aarch64-static")
    python = args.root / "usr/bin/python3.11"
    if qemu is None or not python.exists() or not (args.root / args.site.lstrip("/") / "tvm").is_dir():
        print(
            f"setup missing: need qemu-aarch64-static and an arm64 root at {args.root} with python3.11 and the "
            f"aarch64 apache-tvm wheel in {args.site} (run scripts/qemu_setup.sh)",
            file=sys.stderr,
        )
        return 2
    inputs, ref = reference(meta, args.inputs, seed=1)
    with tempfile.TemporaryDirectory(dir=args.root / "tmp") as work:
        work = Path(work)
        shutil.copytree(args.artifact, work / "artifact")
        _stage_device_package(work / "pkg")
        np.savez(work / "io.npz", inputs=inputs)
        (work / "guest.py").write_text(GUEST)
        env = {
            "QEMU_CPU": args.cpu,
            "QEMU_PAGESIZE": "16384",
            "PYTHONPATH": str(args.root / args.site.lstrip("/")),
            "TVM_NUM_THREADS": str(meta.get("threads", 4)),
            "PATH": "/usr/bin:/bin",
        }
        run = subprocess.run([qemu, "-L", str(args.root), str(python), str(work / "guest.py"), str(work)], env=env)
        if run.returncode != 0:
            print(f"emulated run failed with exit code {run.returncode}", file=sys.stderr)
            return 1
        got = np.load(work / "got.npy")
    result = compare(ref, got, f"qemu {args.cpu}", args.rtol)
    print(
        f"{result.runs_on}: max |logit err| {result.max_abs_err:.3g} (tolerance {result.tolerance:.3g}), top-1 "
        f"agreement {result.top1_agree:.0%}: {'PASSED' if result.passed else 'FAILED'}"
    )
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
