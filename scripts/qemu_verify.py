#!/usr/bin/env python3
"""Run an aarch64 (rpi5/rpi4) artifact under qemu user-mode emulation and compare it with PyTorch.

Check of the cross build (see scripts/README.md, "qemu check"): the artifact's model is rebuilt in PyTorch
on this host (from the checkpoint recorded in its metadata, or the same random init), logits for a few random
inputs are computed here, then an emulated Cortex-A76 (``QEMU_CPU=cortex-a76``, 16 KiB pages) loads the whole
artifact with this checkout's ``bhvit.device`` (checksums, CPU features, weights file, TVM runtime through
``tvm_ffi``) on the aarch64 wheels and must reproduce them.

With ``--eval-dir DATA`` the emulated machine instead runs ``bhvit-device eval --dir DATA`` on the artifact, and
its top-1 must equal the compiled top-1 that ``bhvit-compile --eval-dir`` recorded in the artifact's metadata.

Needs an arm64 Debian root with python3.11 and the aarch64 ``apache-tvm``/``numpy`` (and, for ``--eval-dir``,
``pillow``/``click``/``tqdm``) wheels in ``ROOT/opt/site`` (``scripts/qemu_setup.sh``). Exit code 0: match;
1: mismatch; 2: setup missing.

    python3 scripts/qemu_verify.py artifacts/latest --root /var/tmp/pi-root
    python3 scripts/qemu_verify.py artifacts/w1-rpi5 --eval-dir data/test --root /var/tmp/pi-root
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
from bhvit.compile.verify import NUM_INPUTS, compare
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

GUEST_EVAL = r"""
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "pkg"))
from bhvit.device.cli import main
main(["eval", "--artifact", os.path.join(sys.argv[1], "artifact"), "--dir", sys.argv[2], "--json"])
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


def _compare_eval(report: dict, record: dict, cpu: str) -> int:
    """The emulated ``bhvit-device eval`` report against the ``bhvit-compile --eval-dir`` record."""
    same = report["top1"] == record["artifact_top1"] and report["images"] == record["images"]
    print(
        f"qemu {cpu}: bhvit-device eval top-1 {report['top1']:.2f}% on {report['images']} images, compile record "
        f"{record['artifact_top1']:.2f}% on {record['images']} (PyTorch {record['pytorch_top1']:.2f}%): "
        f"{'PASSED' if same else 'FAILED'}"
    )
    print(json.dumps({"qemu_eval": report, "compile_record": record}))
    return 0 if same else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--root", type=Path, default=Path("/var/tmp/pi-root"), help="arm64 root (default: %(default)s)")
    ap.add_argument("--site", default="/opt/site", help="site-packages inside the root (default: %(default)s)")
    ap.add_argument("--cpu", default="cortex-a76", help="QEMU_CPU (default: %(default)s)")
    ap.add_argument("--inputs", type=int, default=NUM_INPUTS, help="random inputs (default: %(default)s)")
    ap.add_argument("--eval-dir", type=Path, default=None, help="run `bhvit-device eval --dir` on these images instead")
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
    if args.eval_dir is not None and meta.get("evaluation") is None:
        print(f"{args.artifact} has no evaluation record: compile it with --eval-dir", file=sys.stderr)
        return 2
    inputs, ref = reference(meta, args.inputs, seed=1) if args.eval_dir is None else (None, None)
    with tempfile.TemporaryDirectory(dir=args.root / "tmp") as work:
        work = Path(work)
        shutil.copytree(args.artifact, work / "artifact")
        _stage_device_package(work / "pkg")
        env = {
            "QEMU_CPU": args.cpu,
            "QEMU_PAGESIZE": "16384",
            "PYTHONPATH": str(args.root / args.site.lstrip("/")),
            "TVM_NUM_THREADS": str(meta.get("threads", 4)),
            "PATH": "/usr/bin:/bin",
        }
        guest = [qemu, "-L", str(args.root), str(python), str(work / "guest.py"), str(work)]
        if args.eval_dir is not None:
            (work / "guest.py").write_text(GUEST_EVAL)
            run = subprocess.run([*guest, str(args.eval_dir.resolve())], env=env, capture_output=True, text=True)
            if run.returncode != 0:
                print(f"emulated eval failed with exit code {run.returncode}: {run.stderr}", file=sys.stderr)
                return 1
            return _compare_eval(json.loads(run.stdout.splitlines()[-1]), meta["evaluation"], args.cpu)
        np.savez(work / "io.npz", inputs=inputs)
        (work / "guest.py").write_text(GUEST)
        run = subprocess.run(guest, env=env)
        if run.returncode != 0:
            print(f"emulated run failed with exit code {run.returncode}", file=sys.stderr)
            return 1
        got = np.load(work / "got.npy")
    result = compare(ref, got, f"qemu {args.cpu}")
    print(f"{result.summary()}: {'PASSED' if result.passed else 'FAILED'}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
