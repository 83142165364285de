"""Deploy form of a BHViT: binary modules replaced by thin modules that call the ``bhvit::binary_*`` custom ops.

The FP glue is folded where the math is exact or nearly so:

* a learned shift ``x + b`` right before a binary layer moves into the kernel's pack step (exact);
* ``alpha`` and the eval BatchNorm right after a binary layer become one ``scale``/``bias`` per output channel
  of the kernel epilogue (FP32 reassociation only);
* a binary layer's own FP bias joins that ``bias``;
* in a :class:`BinaryMLP` whose fc1 and fc2 both fold, the shortcut adds and RPReLUs after them move into the two
  dense epilogues as well and the whole MLP is one ``binary_mlp`` op (:class:`DeployMLP`): fc1's kernel writes
  fc2's packed input and the pooled shortcut, never its float output; likewise the ``rprelu(proj(t) + t)`` of each
  dense q/k/v branch (:class:`DeployDenseBranch`).

Which shift/layer/norm triples may fold is read from the block structure in :data:`FOLDS`; every other binary
layer is replaced as is (no shift, ``scale = alpha``). FP convs whose kernel equals their stride (the stem, FP
downsampling) become a patch reshape and a matmul: the same function, but the tiled matmul schedule runs it several
times faster than the generic conv schedule. The input model is not modified.
"""

from __future__ import annotations

import copy
import math

import torch
from bhvit.models.bhvit import AttentionProducts, BinaryMLP, Downsample, MSGDCBlock, _DenseBranch
from bhvit.models.layers import BinaryConv2d, LearnableShift, QuantLayer, RPReLU
from torch import nn

from .ops import CUSTOM, BinaryOps

__all__ = [
    "DeployLinear",
    "DeployConv2d",
    "DeployAttentionProducts",
    "DeployDenseBranch",
    "DeployMLP",
    "PatchifyConv",
    "to_deploy",
    "FOLDS",
]

# parent type -> (shift attribute, binary layer attribute (a module or a ModuleList), BN attribute or None).
# The parent's forward must apply them back to back: norm(layer(shift(x))), with the shift feeding nothing else.
FOLDS: dict[type, tuple[tuple[str, str, str | None], ...]] = {
    _DenseBranch: (("shift", "proj", "norm"),),
    BinaryMLP: (("shift1", "fc1", "norm1"), ("shift2", "fc2", "norm2")),
    Downsample: (("shift", "conv", "out_norm"),),
    MSGDCBlock: (("shift", "convs", None),),
}


class _DeployBinary(nn.Module):
    """Holds the kernel constants of one binary layer as buffers (read by the Relax converters)."""

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
    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None, act: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The folded linear; ``residual`` (tiled) and the RPReLU ``act`` (3, N) as in ``ops.binary_linear``."""
        return self.ops.linear(x, self.signs, self.shift, self.scale, self.bias, residual, act)


class DeployConv2d(_DeployBinary):
    def __init__(self, ops: BinaryOps, conv: nn.Conv2d, signs, shift, scale, bias):
        super().__init__(ops, signs, shift, scale, bias)
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.conv2d(
            x, self.signs, self.shift, self.scale, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class DeployAttentionProducts(nn.Module):
    """Binary ``AttentionProducts`` in deploy form: ``alpha * (levels(softmax(sq.sk^T/sqrt d)) @ sign(v))``."""

    def __init__(self, ops: BinaryOps, products: AttentionProducts):
        super().__init__()
        self.ops = ops
        self.heads, self.head_dim, self.levels = products.heads, products.head_dim, products.levels
        self.quantizer = products.quantizer

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2) for t in (q, k, v))
        attn = torch.softmax(self.ops.qk(q, k) / math.sqrt(self.head_dim), dim=-1)
        levels, alpha = self.quantizer.quantize(attn * self.levels)
        out = self.ops.av(levels, v) * alpha
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def _rprelu_rows(act: RPReLU) -> torch.Tensor:
    """An RPReLU's parameters as the (3, C) ``act`` argument of ``ops.linear``."""
    return torch.stack([act.shift_in, act.slope, act.shift_out]).detach().float().contiguous()


def _fusable(module: nn.Module, linears: tuple[str, ...], acts: tuple[str, ...], folded: tuple[str, ...]) -> bool:
    """Whether ``linears`` are deploy linears, ``acts`` RPReLUs and the ``folded`` shifts/norms gone (Identity)."""
    return (
        all(isinstance(getattr(module, n), DeployLinear) for n in linears)
        and all(isinstance(getattr(module, n), RPReLU) for n in acts)
        and all(isinstance(getattr(module, n), nn.Identity) for n in folded)
    )


class DeployDenseBranch(nn.Module):
    """A folded binary q/k/v branch: ``rprelu(proj(t) + t)`` as one binary linear with its epilogue."""

    def __init__(self, branch: _DenseBranch):
        super().__init__()
        self.proj = branch.proj
        self.register_buffer("act", _rprelu_rows(branch.act))

    @staticmethod
    def applies(branch: nn.Module) -> bool:
        return isinstance(branch, _DenseBranch) and _fusable(branch, ("proj",), ("act",), ("shift", "norm"))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.proj(t, t, self.act)


class DeployMLP(nn.Module):
    """A folded binary :class:`BinaryMLP` as one ``binary_mlp`` op: ``fc1(z) + tile(z)`` and ``fc2(h) + pool(h)``,
    each with its RPReLU, run as the epilogues of the two binary linears."""

    def __init__(self, ops: BinaryOps, mlp: BinaryMLP):
        super().__init__()
        self.ops, self.ratio, self.fc1, self.fc2 = ops, mlp.ratio, mlp.fc1, mlp.fc2
        self.register_buffer("act1", _rprelu_rows(mlp.act1))
        self.register_buffer("act2", _rprelu_rows(mlp.act2))
        self.scale, self.drop_path = mlp.scale, mlp.drop_path

    @staticmethod
    def applies(mlp: nn.Module) -> bool:
        """A BinaryMLP whose shifts and norms folded into two deploy linears, with RPReLU activations."""
        return isinstance(mlp, BinaryMLP) and _fusable(
            mlp, ("fc1", "fc2"), ("act1", "act2"), ("shift1", "norm1", "shift2", "norm2")
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        fc1, fc2 = self.fc1, self.fc2
        m = self.ops.mlp(
            z,
            fc1.signs,
            fc1.shift,
            fc1.scale,
            fc1.bias,
            self.act1,
            fc2.signs,
            fc2.shift,
            fc2.scale,
            fc2.bias,
            self.act2,
            self.ratio,
        )
        return self.drop_path(self.scale(m))


class PatchifyConv(nn.Module):
    """An FP conv with kernel == stride, no padding, one group and no dilation, as patch reshape + matmul."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.k = conv.kernel_size[0]
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
        b, c, h, w = x.shape
        k, gh, gw = self.k, h // self.k, w // self.k
        patches = x.reshape(b, c, gh, k, gw, k).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * k * k)
        y = patches @ self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.transpose(1, 2).reshape(b, -1, gh, gw)


def _bn_affine(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval BatchNorm as ``x * s + t``."""
    s = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight
    t = -bn.running_mean * s
    if bn.bias is not None:
        t = t + bn.bias
    return s, t


def _deploy_layer(ops: BinaryOps, layer: QuantLayer, shift: torch.Tensor | None, norm: nn.Module | None) -> nn.Module:
    scale, bias = layer.weight_scale(), layer.bias
    if norm is not None:
        s, t = _bn_affine(norm)
        scale, bias = scale * s, t if bias is None else bias * s + t
    if isinstance(layer, BinaryConv2d):
        return DeployConv2d(ops, layer, layer.weight_signs(), shift, scale, bias)
    return DeployLinear(ops, layer.weight_signs(), shift, scale, bias)


def _fold(ops: BinaryOps, parent: nn.Module, shift_name: str, layer_name: str, norm_name: str | None) -> None:
    layer_or_list = getattr(parent, layer_name)
    layers = list(layer_or_list) if isinstance(layer_or_list, nn.ModuleList) else [layer_or_list]
    if not all(isinstance(m, QuantLayer) and m.is_binary for m in layers):
        return
    shift = getattr(parent, shift_name)
    shift = shift.bias.detach() if isinstance(shift, LearnableShift) else None
    norm = getattr(parent, norm_name) if norm_name else None
    norm = norm if isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)) else None
    new = [_deploy_layer(ops, m, shift, norm) for m in layers]
    setattr(parent, layer_name, nn.ModuleList(new) if isinstance(layer_or_list, nn.ModuleList) else new[0])
    if shift is not None:
        setattr(parent, shift_name, nn.Identity())
    if norm is not None:
        setattr(parent, norm_name, nn.Identity())


def _replace_children(ops: BinaryOps, module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, QuantLayer) and child.is_binary:
            setattr(module, name, _deploy_layer(ops, child, None, None))
        elif isinstance(child, AttentionProducts) and child.is_binary:
            setattr(module, name, DeployAttentionProducts(ops, child))
        elif PatchifyConv.applies(child):
            setattr(module, name, PatchifyConv(child))
        elif DeployMLP.applies(child):
            setattr(module, name, DeployMLP(ops, child))
        elif DeployDenseBranch.applies(child):
            setattr(module, name, DeployDenseBranch(child))
        else:
            _replace_children(ops, child)


@torch.no_grad()
def to_deploy(model: nn.Module, ops: BinaryOps = CUSTOM) -> nn.Module:
    """An eval-mode copy of ``model`` in which every binary product calls ``ops`` (default: the custom ops)."""
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for shift_name, layer_name, norm_name in FOLDS.get(type(parent), ()):
            _fold(ops, parent, shift_name, layer_name, norm_name)
    _replace_children(ops, model)
    left = [n for n, m in model.named_modules() if isinstance(m, (QuantLayer, AttentionProducts)) and m.is_binary]
    assert not left, f"binary modules left in the deploy model: {left}"
    return model
