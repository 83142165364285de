"""Where the model to compile comes from: a ``bhvit-train`` checkpoint, or a random init from model options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from bhvit.device.artifact import PreprocessCfg, file_sha256
from bhvit.models import BHViT, ConfigError, build_model, precision_tag, variant_name
from bhvit.models.checkpoint import CheckpointError, load_checkpoint
from bhvit.models.preprocess import eval_resize

__all__ = ["ModelSource", "ModelSourceError", "from_checkpoint", "random_init", "model_label"]


class ModelSourceError(ValueError):
    """A checkpoint or model option that cannot be compiled (the model source, not a camera's); says why."""


@dataclass
class ModelSource:
    """A BHViT in eval mode plus what the artifact needs to know about it."""

    model: BHViT
    name: str
    class_names: list[str]
    preprocess: PreprocessCfg
    origin: str  # the checkpoint path or "random-init"
    extra: dict = field(default_factory=dict)  # recorded in the artifact's model metadata

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        cfg = self.model.cfg
        return (1, cfg.in_chans, cfg.img_size, cfg.img_size)


def model_label(name: str, model: BHViT) -> str:
    """``<variant>.<precision tag>``, e.g. ``bhvit_tiny_w3_fpds.w1a1`` (see :func:`~bhvit.models.variant_name`), so
    different models never share a default output."""
    cfg = model.cfg
    fields = ("width", "hidden_width", "intermediate_width", "fp_downsample", "img_size", "num_classes")
    return f"{variant_name(name, **{f: getattr(cfg, f) for f in fields})}.{precision_tag(cfg)}"


def random_init(name: str, seed: int = 0, **overrides) -> ModelSource:
    """A randomly initialised registered model (``overrides`` are BHViTCfg fields; ``None`` means default)."""
    torch.manual_seed(seed)
    try:
        model = build_model(name, **overrides).eval()
    except ConfigError as err:
        raise ModelSourceError(str(err)) from None
    size = model.cfg.img_size
    pre = PreprocessCfg(input_size=size, resize=eval_resize(size), crop=size)
    names = [f"class_{i}" for i in range(model.cfg.num_classes)]
    return ModelSource(model, model_label(name, model), names, pre, "random-init", {"seed": seed})


def from_checkpoint(path: str | Path) -> ModelSource:
    """Load a ``bhvit-train`` checkpoint (safetensors with bhvit metadata) as a :class:`ModelSource`; its sha256
    goes into the artifact, so that a retrained or replaced file at the same path is recognised."""
    path = Path(path)
    try:
        model, meta = load_checkpoint(path)
    except CheckpointError as err:
        raise ModelSourceError(str(err)) from None
    if not isinstance(model, BHViT):
        raise ModelSourceError(
            f"{path} holds a {meta.get('family')} model {meta.get('model')!r}, not a BHViT; "
            f"only BHViT checkpoints can be compiled"
        )
    p = dict(meta["preprocess"])
    size = p.pop("input_size")
    size = int(size[-1]) if isinstance(size, (list, tuple)) else int(size)
    if size != model.cfg.img_size:
        raise ModelSourceError(
            f"{path}: preprocess input size {size} differs from the model's img_size {model.cfg.img_size}"
        )
    known = set(PreprocessCfg.__dataclass_fields__)
    pre = PreprocessCfg(input_size=size, **{k: v for k, v in p.items() if k in known})
    return ModelSource(
        model.eval(),
        model_label(meta["model"], model),
        list(meta["class_names"]),
        pre,
        str(path),
        {"source_sha256": file_sha256(path), "val_top1": meta.get("val_top1")},
    )
