"""Writing artifact directories: refuse to clobber other artifacts, stage in a temp dir, swap in atomically.

The metadata schema and its writer belong to the device side (:mod:`bhvit.device.artifact`); this module only
decides where the files go and when they become visible.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bhvit.device.artifact import ArtifactError, TargetInfo, read_metadata

from .targets import TargetSpec

__all__ = ["OutputError", "check_output", "staging", "update_latest", "target_info", "LATEST"]

LATEST = "latest"


class OutputError(ValueError):
    """The output directory cannot take the new artifact; the message says what is there."""


def target_info(spec: TargetSpec) -> TargetInfo:
    return TargetInfo(
        name=spec.name, arch=spec.arch, tvm={**spec.tvm, "num-cores": spec.threads}, cpu_features=spec.cpu_features
    )


def check_output(out: Path, model: str, target: str, runtime: str, overwrite: bool) -> None:
    """Refuse ``out`` when it is a file, a non-empty non-artifact directory, or another artifact (unless
    ``overwrite``). The same model for the same target and runtime is simply rebuilt."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"output {out} exists and is not a directory; choose another --output")
    if overwrite or not any(out.iterdir()):
        return
    try:
        meta = read_metadata(out)
    except ArtifactError:
        raise OutputError(
            f"output {out} is not empty and holds no bhvit artifact; choose another --output or pass --overwrite"
        ) from None
    theirs = (meta.model.get("name"), meta.target.name, meta.runtime)
    if theirs != (model, target, runtime):
        raise OutputError(
            f"output {out} holds a different artifact ({theirs[0]} for {theirs[1]}, {theirs[2]}); "
            f"pass --overwrite to replace it or choose another --output"
        )


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary directory beside ``out``; on success it replaces ``out``, on any error it is deleted."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{os.getpid()}") if out.exists() else None
    if old is not None:
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def update_latest(out: Path) -> Path:
    """Point ``<out.parent>/latest`` at ``out`` (a relative symlink, replaced atomically)."""
    link = out.parent / LATEST
    tmp = out.parent / f".{LATEST}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(out.name, target_is_directory=True)
    os.replace(tmp, link)
    return link
