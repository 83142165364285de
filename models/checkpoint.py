"""Checkpoints: safetensors files whose header carries the JSON metadata needed to rebuild and run the model.

Written by ``bhvit-train``, read by training (warm starts, resume, the teacher) and by ``bhvit-compile``.
Layout of ``<phase dir>/{best,last}.safetensors``:

* tensors: the model ``state_dict`` under its own names; ``last`` also holds the resume state under
  ``train_state/...`` (see :mod:`bhvit.train.checkpoint`), which every model reader here ignores.
* header metadata key ``"bhvit"``: JSON ``{"format": "bhvit.checkpoint", "version": 1, "family": "bhvit"|"timm",
  "model": name, "config": {...}, "class_names": [...], "preprocess": {"input_size", "resize", "crop",
  "interpolation", "mean", "std"}, "phase", "epoch", "val_top1", "train": {...}}``.

Loading never unpickles anything. Every write goes to a temporary file in the same directory, is fsynced and then
renamed over the target, so a killed process leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .bhvit import BHViT
from .config import BHViTCfg, ConfigError

__all__ = [
    "FORMAT",
    "VERSION",
    "STATE_PREFIX",
    "TIMM_CONFIG_KEYS",
    "CheckpointError",
    "atomic_write",
    "write_json",
    "model_from_spec",
    "save_checkpoint",
    "read_meta",
    "load_state_dict",
    "load_checkpoint",
    "read_state_tensor",
]

FORMAT, VERSION, META_KEY = "bhvit.checkpoint", 1, "bhvit"
STATE_PREFIX = "train_state/"
# The timm.create_model keywords a checkpoint header may carry (what bhvit-train writes for a teacher). Anything
# else is refused: some keywords make timm read other files (checkpoint_path, pretrained_cfg_overlay, ...).
TIMM_CONFIG_KEYS = frozenset({"num_classes", "drop_path_rate", "drop_rate", "img_size", "in_chans"})


class CheckpointError(ValueError):
    """A file that is not a usable bhvit checkpoint (corrupt, foreign, or of another architecture)."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then fsync and rename ``tmp`` over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def model_from_spec(spec: dict) -> nn.Module:
    """Build an untrained model from ``{"family": "bhvit"|"timm", "model": name, "config": {...}}``.

    BHViT: ``config`` is ``BHViTCfg.to_dict()``; timm: ``config`` holds ``create_model`` keyword arguments, limited
    to :data:`TIMM_CONFIG_KEYS`.
    """
    family, config = spec.get("family"), spec.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"the model config must be a JSON object, got {type(config).__name__}")
    if family == "bhvit":
        try:
            return BHViT(BHViTCfg.from_dict(config))
        except (ConfigError, TypeError, KeyError) as e:
            raise CheckpointError(f"invalid BHViT config in checkpoint: {e}") from None
    if family == "timm":
        refused = sorted(set(config) - TIMM_CONFIG_KEYS)
        if refused:
            raise CheckpointError(
                f"the timm config carries keywords a bhvit checkpoint may not pass to timm.create_model: "
                f"{', '.join(refused)} (allowed: {', '.join(sorted(TIMM_CONFIG_KEYS))})"
            )
        import timm

        try:
            return timm.create_model(spec["model"], pretrained=False, **config)
        except (RuntimeError, TypeError, KeyError) as e:
            raise CheckpointError(f"cannot build timm model {spec.get('model')!r}: {e}") from None
    raise CheckpointError(f"unknown model family {family!r}")


def save_checkpoint(path: Path, model: nn.Module, meta: dict, state: dict[str, torch.Tensor] | None = None) -> None:
    """Atomically write ``model``'s weights and ``meta`` to ``path``; ``state`` tensors go under ``train_state/``."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({STATE_PREFIX + k: v.detach().cpu().contiguous() for k, v in (state or {}).items()})
    metadata = {META_KEY: json.dumps({"format": FORMAT, "version": VERSION, **meta})}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _open(path: Path):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None


def read_meta(path: Path) -> dict:
    """The validated bhvit metadata of a checkpoint (raises :class:`CheckpointError` for anything else)."""
    with _open(path) as f:
        raw = (f.metadata() or {}).get(META_KEY)
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file without bhvit metadata (not written by bhvit-train)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} has corrupt bhvit metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} does not carry bhvit checkpoint metadata")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {meta['version']}; this bhvit reads <= {VERSION}")
    missing = [k for k in ("family", "model", "config", "class_names", "preprocess") if k not in meta]
    if missing:
        raise CheckpointError(f"{path} metadata lacks {', '.join(missing)}")
    return meta


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a safetensors file (resume state excluded); works on files without bhvit metadata."""
    with _open(path) as f:
        try:
            return {k: f.get_tensor(k) for k in f.keys() if not k.startswith(STATE_PREFIX)}
        except Exception as e:
            raise CheckpointError(f"{path} has unreadable tensors ({e})") from None


def read_state_tensor(path: Path, name: str) -> torch.Tensor | None:
    """The tensor stored as ``state[name]`` by :func:`save_checkpoint`, or ``None`` when the file has none."""
    with _open(path) as f:
        key = STATE_PREFIX + name
        return f.get_tensor(key) if key in f.keys() else None


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model stored at ``path`` (eval mode, on ``device``) and return ``(model, meta)``.

    Raises :class:`CheckpointError` with a readable message for missing, corrupt or non-bhvit files, for configs
    that are not allowed and for tensors that do not fit the stored config.
    """
    meta = read_meta(path)
    model = model_from_spec(meta)
    try:
        model.load_state_dict(load_state_dict(path), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: tensors do not match the stored {meta['model']} config ({e})") from None
    return model.to(device).eval(), meta
