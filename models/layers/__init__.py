"""Building blocks of BHViT: quantisers, precision-aware linear/conv layers, per-channel FP layers, shifts."""

from .binary import BinaryConv2d, BinaryLinear, QuantLayer
from .elementwise import LayerScale, LearnableShift, RPReLU, rprelu
from .quant import ApproxSign, AttentionQuantizer, SignQuantizer, WeightQuantizer, sign_pm1
from .shift import ShiftBranches

__all__ = [
    "BinaryConv2d",
    "BinaryLinear",
    "QuantLayer",
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
