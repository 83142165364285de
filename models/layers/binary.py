"""Linear and conv layers whose precision is a constructor argument (Larq style)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .quant import SignQuantizer, WeightQuantizer

__all__ = ["BinaryLinear", "BinaryConv2d", "QuantLayer"]


class QuantLayer:
    """Mixin: ``precision`` is ``"binary"`` (sign inputs, ``alpha*sign(W_c)`` weights) or ``"fp32"`` (plain layer)."""

    precision: str
    input_quantizer: nn.Module | None
    weight_quantizer: WeightQuantizer | None

    def _set_precision(self, precision: str, recu: bool) -> None:
        self.precision = precision
        binary = precision == "binary"
        self.input_quantizer = SignQuantizer() if binary else None
        self.weight_quantizer = WeightQuantizer(recu) if binary else None

    @property
    def is_binary(self) -> bool:
        return self.precision == "binary"

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quantizer(self.weight) if self.weight_quantizer is not None else self.weight

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_quantizer(x) if self.input_quantizer is not None else x

    def weight_signs(self) -> torch.Tensor:
        """The +-1 weight bits of a binary layer (shape of ``weight``)."""
        return self.weight_quantizer.sign(self.weight)

    def weight_scale(self) -> torch.Tensor:
        """Per-output-channel ``alpha`` of a binary layer."""
        return self.weight_quantizer.scale(self.weight)


class BinaryLinear(nn.Linear, QuantLayer):
    """``nn.Linear`` with a precision; binary: ``F.linear(sign(x), alpha*sign(W - rowmean W))``. No bias by default."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        precision: str = "binary",
        recu: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._set_precision(precision, recu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)


class BinaryConv2d(nn.Conv2d, QuantLayer):
    """``nn.Conv2d`` with a precision. Zero padding is applied after the sign, so padded taps contribute 0."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = False,
        precision: str = "binary",
        device=None,
        dtype=None,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        # The published conv quantiser never uses ReCU (models/README.md), so convs always use the clamp STE.
        self._set_precision(precision, recu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.quantized_input(x), self.quantized_weight(), self.bias)
