"""Training's side of checkpoints: the resume state in ``last`` and warm starts from any checkpoint.

The checkpoint format itself (safetensors + ``bhvit`` header) lives in :mod:`bhvit.models.checkpoint`. The resume
state (epoch, best score, optimizer, scheduler, grad-scaler and RNG states) is one ``torch.save`` blob stored as the
uint8 tensor ``train_state/resume`` of ``last.safetensors``, written in the same atomic rename as the weights, and
read back with ``torch.load(..., weights_only=True)``: plain containers, numbers and tensors, never pickled code.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from bhvit.models import BHViTCfg
from bhvit.models.checkpoint import (
    CheckpointError,
    load_state_dict,
    read_meta,
    read_state_tensor,
    save_checkpoint,
)
from torch import nn

__all__ = [
    "LoadReport",
    "save_last",
    "load_train_state",
    "rng_state",
    "set_rng_state",
    "config_diff",
    "load_matching",
]

RESUME = "resume"
# Config entries that decide tensor shapes; a warm start across a change of these loads (almost) nothing.
_ARCH_FIELDS = ("dims", "mlp_dims", "depths", "heads", "attention_stages", "fp_downsample")


def rng_state() -> dict:
    """Python, numpy, torch and CUDA generator states, as plain containers and tensors."""
    numpy = np.random.get_state(legacy=False)
    numpy["state"]["key"] = torch.from_numpy(numpy["state"]["key"].astype(np.int64))
    state = {"python": random.getstate(), "numpy": numpy, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    numpy = dict(state["numpy"])
    numpy["state"] = {**numpy["state"], "key": numpy["state"]["key"].numpy().astype(np.uint32)}
    np.random.set_state(numpy)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_last(path: Path, model: nn.Module, meta: dict, train_state: dict) -> None:
    """Write the ``last`` checkpoint: weights, ``meta`` and ``train_state`` (see the module docstring)."""
    buffer = io.BytesIO()
    torch.save(train_state, buffer)
    blob = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    save_checkpoint(path, model, meta, {RESUME: blob})


def load_train_state(path: Path) -> dict:
    """The resume state stored by :func:`save_last`."""
    blob = read_state_tensor(path, RESUME)
    if blob is None:
        raise CheckpointError(
            f"{path} holds no training state this bhvit can resume from (not a `last` checkpoint, or written by "
            f"an older bhvit); start the run again with --overwrite"
        )
    try:
        return torch.load(io.BytesIO(blob.numpy().tobytes()), weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for a damaged blob
        raise CheckpointError(f"{path} has an unreadable training state ({e})") from None


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
