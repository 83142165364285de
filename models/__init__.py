"""The BHViT architecture, its precision map and its cost model (shared by training and compiling)."""

from .bhvit import BHViT, BinaryLayerInfo
from .config import PRECISION_PRESETS, BHViTCfg, ConfigError, PrecisionCfg, resolve_precision
from .factory import build_model, list_models, model_cfgs, precision_tag, resolve_config, variant_name
from .perturb import perturb_like_trained

__all__ = [
    "BHViT",
    "BinaryLayerInfo",
    "BHViTCfg",
    "PrecisionCfg",
    "PRECISION_PRESETS",
    "ConfigError",
    "resolve_precision",
    "build_model",
    "list_models",
    "model_cfgs",
    "resolve_config",
    "variant_name",
    "precision_tag",
    "perturb_like_trained",
]
