"""Linear and conv layers whose precision is a constructor argument (Larq style), and their deploy forms."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .deploy_ops import BinaryOps
from .quant import SignQuantizer, WeightQuantizer

__all__ = ["BinaryLinear", "BinaryConv2d", "QuantLayer", "DeployLinear", "DeployConv2d", "PatchifyConv", "bn_affine"]


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

    def deploy_form(
        self,
        ops: BinaryOps,
        shift: torch.Tensor | None = None,
        norm: nn.BatchNorm1d | nn.BatchNorm2d | None = None,
    ) -> nn.Module:
        """Binary: this layer as one ``ops`` call, ``norm(layer(x + shift))`` with ``shift`` moved into the sign and
        ``alpha``, the bias and the eval-mode ``norm`` into one per-channel ``scale``/``bias``. FP: the layer itself.
        """
        if not self.is_binary:
            return self
        scale, bias = self.weight_scale(), self.bias
        if norm is not None:
            s, t = bn_affine(norm)
            scale, bias = scale * s, t if bias is None else bias * s + t
        if isinstance(self, nn.Conv2d):
            return DeployConv2d(ops, self, self.weight_signs(), shift, scale, bias)
        return DeployLinear(ops, self.weight_signs(), shift, scale, bias)


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

    def deploy_form(self, ops: BinaryOps, shift=None, norm=None) -> nn.Module:
        """As :meth:`QuantLayer.deploy_form`; an FP conv with kernel == stride becomes a :class:`PatchifyConv`."""
        if not self.is_binary and PatchifyConv.applies(self):
            return PatchifyConv(self, ops)
        return super().deploy_form(ops, shift, norm)


def bn_affine(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval BatchNorm as ``x * s + t``."""
    s = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight
    t = -bn.running_mean * s
    if bn.bias is not None:
        t = t + bn.bias
    return s, t


class _DeployBinary(nn.Module):
    """Holds the kernel constants of one binary layer as buffers (read by the compiler's converters)."""

    def __init__(
        self,
        ops: BinaryOps,
        signs: torch.Tensor,
        shift: torch.Tensor | None,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
    ):
        super().__init__()
        self.ops = ops
        self.register_buffer("signs", signs.detach().float().contiguous())
        self.register_buffer("shift", None if shift is None else shift.detach().float().contiguous())
        self.register_buffer("scale", scale.detach().float().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())


class DeployLinear(_DeployBinary):
    """A binary linear in deploy form: ``ops.linear`` on its folded constants."""

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None, act: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The folded linear; ``residual`` (tiled) and the RPReLU ``act`` (3, N) as in ``binary_linear``."""
        return self.ops.linear(x, self.signs, self.shift, self.scale, self.bias, residual, act)


class DeployConv2d(_DeployBinary):
    """A binary conv in deploy form: ``ops.conv2d`` on its folded constants."""

    def __init__(self, ops: BinaryOps, conv: nn.Conv2d, signs, shift, scale, bias):
        super().__init__(ops, signs, shift, scale, bias)
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.conv2d(
            x, self.signs, self.shift, self.scale, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class PatchifyConv(nn.Module):
    """An FP conv with kernel == stride, no padding, one group and no dilation, as one ``ops.patch_conv``.

    The same function; the compiler runs it as one register-tiled matmul of the patches that reads the map in place
    (no patch copy) and writes NCHW, several times faster than its generic conv or matmul schedules.
    """

    def __init__(self, conv: nn.Conv2d, ops: BinaryOps):
        super().__init__()
        if not self.applies(conv):
            raise ValueError(f"not a patchify conv: {conv}")
        self.ops, self.k = ops, conv.kernel_size[0]
        self.weight = nn.Parameter(conv.weight.detach().flatten(1).t().contiguous(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    @staticmethod
    def applies(conv: nn.Module) -> bool:
        return (
            isinstance(conv, nn.Conv2d)
            and not (isinstance(conv, QuantLayer) and conv.is_binary)
            and conv.kernel_size[0] == conv.kernel_size[1] == conv.stride[0] == conv.stride[1]
            and conv.padding in ((0, 0), 0)
            and conv.groups == 1
            and conv.dilation == (1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.patch_conv(x, self.weight, self.bias, self.k)
