"""Named BHViT configurations and :func:`build_model`."""

from __future__ import annotations

from .bhvit import BHViT
from .config import BHViTCfg, ConfigError, PrecisionCfg, resolve_precision

__all__ = ["model_cfgs", "build_model", "list_models", "resolve_config", "variant_name", "precision_tag"]

# Architecture names never carry precision (that is a build argument): bhvit_tiny_w3 is binary or FP32.
model_cfgs: dict[str, BHViTCfg] = {
    "bhvit_tiny": BHViTCfg(),
    "bhvit_tiny_w2": BHViTCfg(width=2),
    "bhvit_tiny_w3": BHViTCfg(width=3),
    "bhvit_tiny_w3_fpds": BHViTCfg(width=3, fp_downsample=True),
    "bhvit_tiny_h3": BHViTCfg(hidden_width=3, intermediate_width=6),  # I = 2C (the thesis' "hidden" sweep)
    "bhvit_tiny_i3": BHViTCfg(intermediate_width=3),
    # A tiny variant for tests and the CPU demo: 64x64 inputs, narrow stages.
    "test_bhvit": BHViTCfg(
        base_dims=(16, 32, 64, 128),
        base_mlp=(32, 64, 128, 256),
        depths=(1, 1, 1, 1),
        heads=(1, 1, 2, 2),
        img_size=64,
        num_classes=10,
    ),
}


def list_models() -> list[str]:
    return sorted(model_cfgs)


def resolve_config(name: str = "bhvit_tiny", **overrides) -> BHViTCfg:
    """The named config with ``overrides`` applied; ``precision`` may be a preset name or a PrecisionCfg."""
    if name not in model_cfgs:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "precision" in overrides and not isinstance(overrides["precision"], PrecisionCfg):
        overrides["precision"] = resolve_precision(overrides["precision"])
    return model_cfgs[name].replace(**overrides)


def build_model(name: str = "bhvit_tiny", **overrides) -> BHViT:
    """Build a BHViT, e.g. ``build_model("bhvit_tiny", width=3, precision="binary", num_classes=37)``."""
    return BHViT(resolve_config(name, **overrides))


# Architecture fields that name a variant, and how each is written.
_NAME_TAGS = (
    ("width", "w{:g}"),
    ("hidden_width", "h{:g}"),
    ("intermediate_width", "i{:g}"),
    ("fp_downsample", "fpds"),
    ("img_size", "{}"),
    ("num_classes", "c{}"),
)


def variant_name(name: str, always: tuple[str, ...] = (), **fields) -> str:
    """The one name of a model variant, e.g. ``bhvit_tiny_w3_fpds``: the registered ``name`` plus a tag for every
    field given in ``fields`` that differs from that name's config (and for every field in ``always``). A name
    that is not registered (a timm model) is compared with the default BHViT config."""
    default = model_cfgs.get(name, BHViTCfg())
    values = {f: v for f, v in fields.items() if v is not None}
    tags = [
        "_" + tag.format(values.get(f, getattr(default, f)))
        for f, tag in _NAME_TAGS
        if f in always or (f in values and values[f] != getattr(default, f))
    ]
    return name + "".join(tags)


def precision_tag(cfg: BHViTCfg) -> str:
    """``w1a1`` (all binary), ``fp32`` or ``mixed``: the precision part of an artifact's name."""
    if cfg.precision.default == "binary" and not cfg.precision.overrides:
        return "w1a1"
    return "fp32" if not cfg.is_binary else "mixed"
