"""Checkpoints: safetensors files whose header carries the JSON metadata needed to rebuild and run the model.

Layout of ``<phase dir>/{best,last}.safetensors``:

* tensors: the model ``state_dict`` under its own names; ``last`` also holds the resume state (optimizer moments,
  RNG states) under ``train_state/<n>``, which :func:`load_checkpoint` ignores.
* header metadata key ``"bhvit"``: JSON ``{"format": "bhvit.checkpoint", "version": 1, "family": "bhvit"|"timm",
  "model": name, "config": {...}, "class_names": [...], "preprocess": {"input_size", "resize", "crop",
  "interpolation", "mean", "std"}, "phase", "epoch", "val_top1", "train": {...}}``; ``last`` adds the key
  ``"train_state"`` (JSON with ``{"__tensor__": key}`` placeholders).

Loading never unpickles anything. Every write goes to a temporary file in the same directory, is fsynced and then
renamed over the target, so a killed process leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .config import TrainError

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "LoadReport",
    "model_from_spec",
    "save_checkpoint",
    "read_meta",
    "config_diff",
    "load_checkpoint",
    "load_state_dict",
    "load_matching",
    "load_train_state",
    "rng_state",
    "set_rng_state",
    "atomic_write",
    "write_json",
]

log = logging.getLogger(__name__)

FORMAT, VERSION, META_KEY, STATE_KEY = "bhvit.checkpoint", 1, "bhvit", "train_state"
STATE_PREFIX = "train_state/"
# Config entries that decide tensor shapes; a warm start across a change of these loads (almost) nothing.
_ARCH_FIELDS = ("dims", "mlp_dims", "depths", "heads", "attention_stages", "fp_downsample")


class CheckpointError(TrainError):
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
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


# ----------------------------------------------------------------------------------------------- model specs


def model_from_spec(spec: dict) -> nn.Module:
    """Build an untrained model from ``{"family": "bhvit"|"timm", "model": name, "config": {...}}``.

    BHViT: ``config`` is ``BHViTCfg.to_dict()``; timm: ``config`` holds the ``create_model`` keyword arguments.
    """
    from bhvit.models import BHViT, BHViTCfg, ConfigError

    if spec.get("family") == "bhvit":
        try:
            return BHViT(BHViTCfg.from_dict(spec["config"]))
        except (ConfigError, TypeError, KeyError) as e:
            raise CheckpointError(f"invalid BHViT config in checkpoint: {e}") from None
    if spec.get("family") == "timm":
        import timm

        try:
            return timm.create_model(spec["model"], pretrained=False, **spec["config"])
        except (RuntimeError, TypeError, KeyError) as e:
            raise CheckpointError(f"cannot build timm model {spec.get('model')!r}: {e}") from None
    raise CheckpointError(f"unknown model family {spec.get('family')!r}")


# ---------------------------------------------------------------------------------------- train-state codec


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able structure with tensors (and numpy arrays) moved to ``tensors`` behind placeholders."""
    if isinstance(obj, torch.Tensor):
        key = f"{STATE_PREFIX}{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"{STATE_PREFIX}{len(tensors)}"
        tensors[key] = torch.from_numpy(obj.astype(np.int64) if obj.dtype.kind in "ui" else obj.copy())
        return {"__ndarray__": key, "dtype": obj.dtype.str}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, tensors: Callable[[str], torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors(obj["__tensor__"])
    if "__ndarray__" in obj:
        return tensors(obj["__ndarray__"]).numpy().astype(np.dtype(obj["dtype"]))
    if "__items__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    return {k: _decode(v, tensors) for k, v in obj.items()}


def rng_state() -> dict:
    """Python, numpy, torch and CUDA generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------- save and load


def save_checkpoint(path: Path, model: nn.Module, meta: dict, train_state: dict | None = None) -> None:
    """Atomically write ``model``'s weights, ``meta`` (and, for ``last``, ``train_state``) to ``path``."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "version": VERSION, **meta}
    metadata = {META_KEY: json.dumps(header)}
    if train_state is not None:
        metadata[STATE_KEY] = json.dumps(_encode(train_state, tensors))
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


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model stored at ``path`` (eval mode, on ``device``) and return ``(model, meta)``.

    Raises :class:`CheckpointError` with a readable message for missing, corrupt or non-bhvit files and for
    tensors that do not fit the stored config.
    """
    meta = read_meta(path)
    model = model_from_spec(meta)
    try:
        model.load_state_dict(load_state_dict(path), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: tensors do not match the stored {meta['model']} config ({e})") from None
    return model.to(device).eval(), meta


def load_train_state(path: Path) -> dict:
    """The resume state stored in a ``last`` checkpoint."""
    with _open(path) as f:
        raw = (f.metadata() or {}).get(STATE_KEY)
        if raw is None:
            raise CheckpointError(f"{path} holds no training state to resume from")
        return _decode(json.loads(raw), f.get_tensor)


@dataclass
class LoadReport:
    """What :func:`load_matching` did; ``summary()`` is one log line."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    mismatched: list[str] = field(default_factory=list)  # same name, other shape
    unused: list[str] = field(default_factory=list)  # in the checkpoint, not in the model

    def summary(self) -> str:
        def names(xs: list[str]) -> str:
            return ", ".join(xs[:6]) + (f", ... ({len(xs)} in all)" if len(xs) > 6 else "") if xs else "none"

        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        return (
            f"loaded {len(self.loaded)}/{total} tensors; not in checkpoint: {names(self.missing)}; "
            f"shape mismatch: {names(self.mismatched)}; unused from checkpoint: {names(self.unused)}"
        )

    def to_dict(self) -> dict:
        return {"loaded": self.loaded, "missing": self.missing, "mismatched": self.mismatched, "unused": self.unused}


def config_diff(checkpoint: dict, run: dict) -> list[str]:
    """``"field: <checkpoint value> in the checkpoint, <run value> in this run"`` for every field that differs.

    Values are compared as a checkpoint header stores them (JSON: tuples are lists); a missing field is ``None``.
    """
    checkpoint, run = json.loads(json.dumps(checkpoint)), json.loads(json.dumps(run))
    return [
        f"{k}: {checkpoint.get(k)!r} in the checkpoint, {run.get(k)!r} in this run"
        for k in dict.fromkeys([*checkpoint, *run])
        if checkpoint.get(k) != run.get(k)
    ]


def _architecture(config: dict) -> dict:
    from bhvit.models import BHViTCfg

    cfg = BHViTCfg.from_dict(config)
    return {k: getattr(cfg, k) for k in _ARCH_FIELDS}


def _check_architecture(path: Path, spec: dict) -> None:
    try:
        meta = read_meta(path)
    except CheckpointError:
        return  # plain safetensors (e.g. timm weights): name and shape matching decides
    if meta["family"] != spec["family"] or (spec["family"] == "timm" and meta["model"] != spec["model"]):
        raise CheckpointError(
            f"{path} holds a {meta['family']} {meta['model']} model, this run trains {spec['family']} {spec['model']}"
        )
    if spec["family"] == "bhvit":
        diff = config_diff(_architecture(meta["config"]), _architecture(spec["config"]))
        if diff:
            raise CheckpointError(
                f"{path} is a BHViT of another architecture or width ({'; '.join(diff)}); "
                f"use a checkpoint trained with the same --width/--hidden-width/"
                f"--intermediate-width/--fp-downsample"
            )


def load_matching(model: nn.Module, path: Path, spec: dict) -> LoadReport:
    """Warm start: copy every checkpoint tensor whose name and shape match ``model``; report the rest.

    ``spec`` describes ``model`` (see :func:`model_from_spec`). Refuses (``CheckpointError``) a bhvit checkpoint of
    another family, architecture or width, and any file from which nothing matches.
    """
    _check_architecture(path, spec)
    source = load_state_dict(path)
    target = model.state_dict()
    report = LoadReport(unused=sorted(set(source) - set(target)))
    update = {}
    for name, tensor in target.items():
        if name not in source:
            report.missing.append(name)
        elif source[name].shape != tensor.shape:
            report.mismatched.append(f"{name} {tuple(source[name].shape)}->{tuple(tensor.shape)}")
        else:
            update[name] = source[name]
            report.loaded.append(name)
    if not update:
        raise CheckpointError(f"nothing in {path} matches this model by name and shape ({report.summary()})")
    model.load_state_dict(update, strict=False)
    return report
