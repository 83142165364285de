"""Building blocks of BHViT: quantisers, precision-aware linear/conv layers, per-channel FP layers, shifts, and the
deploy forms and ops the compiler lowers."""

from .binary import BinaryConv2d, BinaryLinear, DeployConv2d, DeployLinear, PatchifyConv, QuantLayer
from .deploy import Deployable, Fold, FoldError, fold_binary
from .deploy_ops import CUSTOM, EAGER, BinaryOps
from .elementwise import LayerScale, LearnableShift, RPReLU, rprelu
from .quant import ApproxSign, AttentionQuantizer, SignQuantizer, WeightQuantizer, sign_pm1
from .shift import ShiftBranches

__all__ = [
    "BinaryConv2d",
    "BinaryLinear",
    "QuantLayer",
    "DeployConv2d",
    "DeployLinear",
    "PatchifyConv",
    "Deployable",
    "Fold",
    "FoldError",
    "fold_binary",
    "BinaryOps",
    "CUSTOM",
    "EAGER",
    "LayerScale",
    "LearnableShift",
    "RPReLU",
    "rprelu",
    "ApproxSign",
    "AttentionQuantizer",
    "SignQuantizer",
    "WeightQuantizer",
    "sign_pm1",
    "ShiftBranches",
]
