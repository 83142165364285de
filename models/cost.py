"""Cost model (``models/README.md``, "Cost model"), computed by tracing one forward pass of an instantiated model.

Rules: MACs of Conv2d/Linear plus the attention products Q.K^T and A.V (A.V charged once); a MAC is a BOP when
its layer is binary, else a FLOP; OPs = FLOPs + BOPs/64. Weight memory counts Conv2d/Linear weights only: binary
at 1 bit, FP at 16 bit inside models with binary layers and 32 bit in the all-FP model; MiB = 2^20 bytes.
The *deployable* size counts what a device stores: binary weights packed at 1 bit plus one FP32 scale per output
channel, and every other parameter and buffer at FP32 (BN statistics, position embeddings, RPReLU, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .bhvit import AttentionProducts, BHViT
from .config import BHViTCfg
from .layers import QuantLayer

__all__ = ["LayerCost", "ModelCost", "model_cost", "config_cost"]

MIB = 2**20
BOPS_PER_OP = 64
# Buffers a device never needs: BN's update counter and the attention quantiser's "initialised" flag.
_TRAINING_ONLY_BUFFERS = ("num_batches_tracked", "initialized")


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    precision: str
    macs: int
    weight_bits: int


@dataclass(frozen=True)
class ModelCost:
    """One row of the cost table; ``layers`` holds the per-layer breakdown."""

    flops: int
    bops: int
    weight_bytes: float
    deployable_bytes: int
    layers: tuple[LayerCost, ...] = field(repr=False)

    @property
    def ops(self) -> float:
        return self.flops + self.bops / BOPS_PER_OP

    @property
    def mops(self) -> float:
        return self.ops / 1e6

    @property
    def memory_mib(self) -> float:
        return self.weight_bytes / MIB

    @property
    def deployable_mib(self) -> float:
        return self.deployable_bytes / MIB

    def row(self) -> dict:
        """The JSON row: ``memory_mib``, ``mops``, ``flops``, ``bops``, ``deployable_mib``."""
        return {
            "memory_mib": self.memory_mib,
            "mops": self.mops,
            "flops": self.flops,
            "bops": self.bops,
            "deployable_mib": self.deployable_mib,
        }

    def layer_rows(self) -> list[dict]:
        return [asdict(layer) for layer in self.layers]


def _weight_bits(module: nn.Module, fp_bits: int) -> int:
    if isinstance(module, AttentionProducts):
        return 0
    bits = 1 if isinstance(module, QuantLayer) and module.is_binary else fp_bits
    return module.weight.numel() * bits


def _is_binary(module: nn.Module) -> bool:
    return isinstance(module, (QuantLayer, AttentionProducts)) and module.is_binary


def _deployable_bytes(model: BHViT) -> int:
    binary_weights = set()
    total = 0
    for _, m in model.named_modules():
        if isinstance(m, QuantLayer) and m.is_binary:
            binary_weights.add(id(m.weight))
            out_channels = m.weight.shape[0]
            total += (m.weight[0].numel() + 7) // 8 * out_channels + 4 * out_channels
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if id(t) in binary_weights or name.endswith(_TRAINING_ONLY_BUFFERS):
            continue
        total += 4 * t.numel()
    return total


@torch.no_grad()
def model_cost(model: BHViT) -> ModelCost:
    """Trace one image through ``model`` (at its configured input size) and apply the counting rules."""
    fp_bits = 16 if model.cfg.is_binary else 32
    layers: list[LayerCost] = []
    names = {m: n for n, m in model.named_modules()}

    def count(module, inputs, output):  # one image is traced, so counts are per image
        if isinstance(module, nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs, kind = output.numel() * per_out, "conv2d"
        elif isinstance(module, nn.Linear):
            macs, kind = output.numel() * module.in_features, "linear"
        else:
            q = inputs[0]  # (windows, n, C): Q.K^T and A.V each cost windows * n^2 * C
            macs, kind = 2 * q.shape[0] * q.shape[1] ** 2 * q.shape[2], "attention"
        layers.append(
            LayerCost(
                names[module], kind, "binary" if _is_binary(module) else "fp32", macs, _weight_bits(module, fp_bits)
            )
        )

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear, AttentionProducts))
    ]
    was_training = model.training
    try:
        model.eval()
        cfg = model.cfg
        model(torch.zeros(1, cfg.in_chans, cfg.img_size, cfg.img_size, device=model.head.weight.device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    flops = sum(layer.macs for layer in layers if layer.precision == "fp32")
    bops = sum(layer.macs for layer in layers if layer.precision == "binary")
    weight_bytes = sum(layer.weight_bits for layer in layers) / 8
    return ModelCost(flops, bops, weight_bytes, _deployable_bytes(model), tuple(layers))


def config_cost(cfg: BHViTCfg) -> ModelCost:
    """Cost of a configuration without allocating weights (the model is built and traced on the meta device)."""
    with torch.device("meta"):
        return model_cost(BHViT(cfg))
