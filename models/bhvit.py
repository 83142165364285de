"""BHViT: Binarized Hybrid Vision Transformer, width-scalable.

Paper: "BHViT: Binarized Hybrid Vision Transformer" (CVPR 2025, arXiv 2503.02394); official code IMRL/BHViT (MIT).
Width study: ivarvl/bhvit-width-scaling (MIT). This is an independent implementation of the behaviour described in
``models/README.md`` ("Architecture"), including the published quirks (global-token pooling that never sees
the last rows of a 14x14 map, circular shifts, tile/pool MLP shortcuts that do not pair channel-wise).

What we changed: ``sign(0) = +1`` (what a bit-packed kernel computes); precision is a per-layer argument set by one
:class:`~bhvit.models.config.PrecisionCfg` (the FP32 reference is this same class); windows shrink to the map on
small inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from timm.layers import DropPath, trunc_normal_
from torch import nn
from torch.nn import functional as F

from .config import BHViTCfg
from .layers import (
    AttentionQuantizer,
    BinaryConv2d,
    BinaryLinear,
    LayerScale,
    LearnableShift,
    PatchifyConv,
    QuantLayer,
    RPReLU,
    ShiftBranches,
    SignQuantizer,
)
from .layers.binary import bn_affine
from .layers.deploy import Fold, fold_binary
from .layers.deploy_ops import BinaryOps

__all__ = [
    "BHViT",
    "MSGDCBlock",
    "MSMHABlock",
    "BinaryMLP",
    "Downsample",
    "AttentionProducts",
    "BinaryLayerInfo",
    "DeployMLP",
    "DeployDenseBranch",
    "DeployBlockTail",
    "DeployAttentionProducts",
]


def _bn_tokens(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """Channel BatchNorm of tokens ``(B, N, C)``."""
    b, n, c = x.shape
    return bn(x.reshape(b * n, c)).reshape(b, n, c)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def tokens_to_map(x: torch.Tensor, size: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], size, size)


class BinaryMLP(nn.Module):
    """Binary MLP with tile/pool shortcuts (models/README.md, "Binary MLP"); tokens ``(B, N, C)`` in and out."""

    folds: ClassVar[tuple[Fold, ...]] = (Fold("shift1", "fc1", "norm1"), Fold("shift2", "fc2", "norm2"))

    def __init__(self, name: str, dim: int, hidden: int, cfg: BHViTCfg, drop_path: float):
        super().__init__()
        p = cfg.precision.precision_of
        self.ratio = hidden // dim
        self.shift1 = LearnableShift(dim)
        self.fc1 = BinaryLinear(dim, hidden, precision=p(f"{name}.fc1"), recu=cfg.recu)
        self.norm1 = nn.BatchNorm1d(hidden)
        self.act1 = RPReLU(hidden)
        self.shift2 = LearnableShift(hidden)
        self.fc2 = BinaryLinear(hidden, dim, precision=p(f"{name}.fc2"), recu=cfg.recu)
        self.norm2 = nn.BatchNorm1d(dim)
        self.act2 = RPReLU(dim)
        self.scale = LayerScale(dim, 0.1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.act1(_bn_tokens(self.norm1, self.fc1(self.shift1(z))) + z.repeat(1, 1, self.ratio))
        b, n, i = h.shape
        pooled = h.reshape(b, n, i // self.ratio, self.ratio).mean(-1)
        m = self.act2(_bn_tokens(self.norm2, self.fc2(self.shift2(h))) + pooled)
        return self.drop_path(self.scale(m))

    def deploy_form(self, ops: BinaryOps) -> nn.Module:
        """Both linears binary: one :class:`DeployMLP`; otherwise this MLP with its binary linear(s) folded."""
        if fold_binary(self, ops, self.folds) and isinstance(self.act1, RPReLU) and isinstance(self.act2, RPReLU):
            return DeployMLP(ops, self)
        return self


class DeployMLP(nn.Module):
    """A folded binary :class:`BinaryMLP` as one ``binary_mlp`` op: ``fc1(z) + tile(z)`` and ``fc2(h) + pool(h)``,
    each with its RPReLU, run as the epilogues of the two binary linears (fc1's kernel writes fc2's packed input and
    the pooled shortcut, never its float output)."""

    def __init__(self, ops: BinaryOps, mlp: BinaryMLP):
        super().__init__()
        self.ops, self.ratio, self.fc1, self.fc2 = ops, mlp.ratio, mlp.fc1, mlp.fc2
        self.register_buffer("act1", mlp.act1.act_rows())
        self.register_buffer("act2", mlp.act2.act_rows())
        self.scale, self.drop_path = mlp.scale, mlp.drop_path

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


class _BlockTail(nn.Module):
    """``X1 + MLP(BN(X1)) + shifts(BN(X1))``, shared by both block types (maps in and out)."""

    def __init__(self, name: str, dim: int, hidden: int, cfg: BHViTCfg, drop_path: float):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.mlp = BinaryMLP(f"{name}.mlp", dim, hidden, cfg, drop_path)
        self.shifts = ShiftBranches(dim, cfg.shift3, cfg.shift5)

    def forward(self, x1: torch.Tensor) -> torch.Tensor:
        # DeployBlockTail computes this sum as one op: change the two together (tests/models/test_deploy_forms.py
        # checks that they agree)
        z = self.norm(x1)
        out = x1 + tokens_to_map(self.mlp(map_to_tokens(z)), z.shape[-1])
        s = self.shifts(z)
        return out if s is None else out + s

    def deploy_form(self, ops: BinaryOps) -> nn.Module:
        """The whole sum as one ``stencil_add`` (:class:`DeployBlockTail`)."""
        return DeployBlockTail(ops, self)


class DeployBlockTail(nn.Module):
    """A :class:`_BlockTail` whose sum is one ``stencil_add``: the shift branches are linear in ``x1`` through the
    eval BatchNorm, so with the residual they are one cross stencil of ``x1`` (FP32 reassociation only), and the
    MLP's LayerScale moves into the op's token scale and bias."""

    def __init__(self, ops: BinaryOps, tail: _BlockTail):
        super().__init__()
        s, t = (v.detach() for v in bn_affine(tail.norm))
        taps, bias = tail.shifts.stencil(len(s), s.device)  # of z = s * x1 + t
        bias = bias + t * taps.sum(1) + tail.mlp.scale.beta.detach()
        taps = taps * s[:, None]
        taps[:, 0] += 1.0  # the residual x1
        self.register_buffer("taps", taps)
        self.register_buffer("token_scale", tail.mlp.scale.alpha.detach().clone())
        self.register_buffer("bias", bias)
        tail.mlp.scale = nn.Identity()
        self.ops, self.norm, self.mlp = ops, tail.norm, tail.mlp

    def forward(self, x1: torch.Tensor) -> torch.Tensor:
        m = self.mlp(map_to_tokens(self.norm(x1)))
        return self.ops.stencil_add(x1, m, self.taps, self.token_scale, self.bias)


class MSGDCBlock(nn.Module):
    """Multi-scale grouped dilated conv block (stages 0-1, models/README.md "MSGDC block"); maps ``(B, C, H, W)``."""

    dilations = (1, 3, 5)
    folds: ClassVar[tuple[Fold, ...]] = (Fold("shift", "convs"),)

    def __init__(self, name: str, dim: int, hidden: int, cfg: BHViTCfg, drop_path: float):
        super().__init__()
        p = cfg.precision.precision_of
        self.norm = nn.BatchNorm2d(dim)
        self.shift = LearnableShift(dim, channel_dim=1)
        self.convs = nn.ModuleList(
            BinaryConv2d(dim, dim, 3, padding=d, dilation=d, groups=4, bias=True, precision=p(f"{name}.convs.{i}"))
            for i, d in enumerate(self.dilations)
        )
        self.acts = nn.ModuleList(RPReLU(dim, channel_dim=1) for _ in self.dilations)
        self.mix_norm = nn.BatchNorm2d(dim)
        self.tail = _BlockTail(f"{name}.tail", dim, hidden, cfg, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.shift(self.norm(x))
        mixed = sum(act(conv(v)) for conv, act in zip(self.convs, self.acts))
        return self.tail(x + self.mix_norm(mixed))

    def deploy_form(self, ops: BinaryOps) -> nn.Module:
        """This block with the shift folded into its binary convs (all binary) and their biases into the epilogue."""
        fold_binary(self, ops, self.folds)
        return self


class AttentionProducts(nn.Module):
    """``softmax(Q K^T / sqrt(d))`` then ``A V``. Binary: Q, K, V are signed and A is quantised to 0..3 levels.

    Holds the precision of the two activation-activation products, so the cost model and compiler can read it.
    """

    def __init__(self, heads: int, dim: int, precision: str, levels: int):
        super().__init__()
        self.precision = precision
        self.heads, self.head_dim, self.levels = heads, dim // heads, levels
        binary = precision == "binary"
        self.sign = SignQuantizer() if binary else None
        self.quantizer = AttentionQuantizer(heads, levels) if binary else None

    @property
    def is_binary(self) -> bool:
        return self.precision == "binary"

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.sign is not None:
            q, k, v = self.sign(q), self.sign(k), self.sign(v)
        q, k, v = self._split(q), self._split(k), self._split(v)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        if self.quantizer is not None:
            attn = self.quantizer(attn * self.levels)
        out = attn @ v
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)

    def deploy_form(self, ops: BinaryOps) -> nn.Module:
        return DeployAttentionProducts(ops, self) if self.is_binary else self


_MAX_HEAD_DIM = 88 * 88  # float32 exp overflows past 88.7, and binary logits reach sqrt(head_dim)


class DeployAttentionProducts(nn.Module):
    """Binary ``AttentionProducts`` in deploy form: ``alpha * (levels(softmax(sq.sk^T/sqrt d)) @ sign(v))``."""

    def __init__(self, ops: BinaryOps, products: AttentionProducts):
        super().__init__()
        if products.head_dim > _MAX_HEAD_DIM:
            raise ValueError(f"binary attention head dim {products.head_dim} > {_MAX_HEAD_DIM}: exp(sqrt(d)) overflows")
        self.ops = ops
        self.heads, self.head_dim, self.levels = products.heads, products.head_dim, products.levels
        self.quantizer = products.quantizer

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2) for t in (q, k, v))
        # softmax without subtracting the row maximum: |sign(q)·sign(k)| <= d, so the logits lie within +-sqrt(d)
        # and their exponentials cannot overflow (checked in __init__); one reduction over the row instead of two
        e = torch.exp(self.ops.qk(q, k) / math.sqrt(self.head_dim))
        attn = e / e.sum(-1, keepdim=True)
        levels, alpha = self.quantizer.quantize(attn * self.levels)
        out = self.ops.av(levels, v) * alpha
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


class _DenseBranch(nn.Module):
    """``RPReLU(BN(BinLinear(T + m)) + T)`` (one of q/k/v: models/README.md, "MSMHA block" step 3)."""

    folds: ClassVar[tuple[Fold, ...]] = (Fold("shift", "proj", "norm"),)

    def __init__(self, dim: int, precision: str, recu: bool):
        super().__init__()
        self.shift = LearnableShift(dim)
        self.proj = BinaryLinear(dim, dim, precision=precision, recu=recu)
        self.norm = nn.BatchNorm1d(dim)
        self.act = RPReLU(dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.act(_bn_tokens(self.norm, self.proj(self.shift(t))) + t)

    def deploy_form(self, ops: BinaryOps) -> nn.Module:
        """Binary: one :class:`DeployDenseBranch`; FP: this branch as is."""
        if fold_binary(self, ops, self.folds) and isinstance(self.act, RPReLU):
            return DeployDenseBranch(self)
        return self


class DeployDenseBranch(nn.Module):
    """A folded binary q/k/v/out branch: ``rprelu(proj(t) + t)`` as one binary linear with its epilogue."""

    def __init__(self, branch: _DenseBranch):
        super().__init__()
        self.proj = branch.proj
        self.register_buffer("act", branch.act.act_rows())

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.proj(t, t, self.act)


class WindowAttention(nn.Module):
    """Window + pooled-global-token attention with dense q/k/v shortcuts (models/README.md, "MSMHA block"); maps."""

    def __init__(self, name: str, dim: int, heads: int, window: int, map_size: int, cfg: BHViTCfg):
        super().__init__()
        p = cfg.precision.precision_of
        self.window, self.map_size = window, map_size
        self.grid = map_size // window
        self.pool_padding = (window - 1) // 2
        self.blend = nn.Parameter(torch.full((dim,), 0.5))
        self.token_norm = nn.LayerNorm(dim, eps=1e-5)
        self.q = _DenseBranch(dim, p(f"{name}.q.proj"), cfg.recu)
        self.k = _DenseBranch(dim, p(f"{name}.k.proj"), cfg.recu)
        self.v = _DenseBranch(dim, p(f"{name}.v.proj"), cfg.recu)
        self.q_shift, self.k_shift, self.v_shift = LearnableShift(dim), LearnableShift(dim), LearnableShift(dim)
        self.products = AttentionProducts(heads, dim, p(f"{name}.products"), cfg.attn_levels)
        self.ctx_norm = nn.BatchNorm1d(dim)
        self.ctx_act = RPReLU(dim)
        self.local_weight = nn.Parameter(torch.full((dim,), 0.5))
        self.out = _DenseBranch(dim, p(f"{name}.out.proj"), cfg.recu)
        self.out_scale = LayerScale(dim, 0.1)

    def _windows(self, u: torch.Tensor) -> torch.Tensor:
        b, c, g, w = u.shape[0], u.shape[1], self.grid, self.window
        x = u.reshape(b, c, g, w, g, w).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b * g * g, w * w, c)

    def _unwindow(self, t: torch.Tensor, b: int) -> torch.Tensor:
        g, w, c = self.grid, self.window, t.shape[-1]
        x = t.reshape(b, g, g, w, w, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, g * w, g * w)

    def _global_tokens(self, u: torch.Tensor) -> torch.Tensor:
        k, pad = self.window, self.pool_padding
        a = self.blend.view(1, -1, 1, 1)
        pooled = a * F.max_pool2d(u, k, k, pad) + (1 - a) * F.avg_pool2d(u, k, k, pad, count_include_pad=True)
        return map_to_tokens(pooled)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, nw = u.shape[0], self.grid * self.grid
        local = self._windows(u)
        glob = self._global_tokens(u)
        n_glob = glob.shape[1]
        glob = glob.unsqueeze(1).expand(b, nw, n_glob, glob.shape[-1]).reshape(b * nw, n_glob, -1)
        t = self.token_norm(torch.cat([local, glob], dim=1))
        pq, pk, pv = self.q(t), self.k(t), self.v(t)
        ctx = self.products(self.q_shift(pq), self.k_shift(pk), self.v_shift(pv))
        r = self.ctx_act(_bn_tokens(self.ctx_norm, ctx) + pq + pk + pv)
        n_local = self.window * self.window
        local_out = self._unwindow(r[:, :n_local], b)
        glob_out = r[:, n_local:].reshape(b, nw, n_glob, -1).mean(1)
        glob_map = tokens_to_map(glob_out, self.grid)
        glob_map = glob_map.repeat_interleave(self.window, 2).repeat_interleave(self.window, 3)
        lam = self.local_weight.view(1, -1, 1, 1)
        y = map_to_tokens(lam * local_out + (1 - lam) * glob_map)
        return tokens_to_map(self.out_scale(self.out(y)), self.map_size)


class MSMHABlock(nn.Module):
    """Multi-scale multi-head attention block (stages 2-3, models/README.md "MSMHA block"); maps ``(B, C, H, W)``."""

    def __init__(
        self, name: str, dim: int, hidden: int, heads: int, window: int, map_size: int, cfg: BHViTCfg, drop_path: float
    ):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.attn = WindowAttention(f"{name}.attn", dim, heads, window, map_size, cfg)
        self.tail = _BlockTail(f"{name}.tail", dim, hidden, cfg, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(x + self.attn(self.norm(x)))


class Downsample(nn.Module):
    """2x2 stride-2 downsampling ``C -> 2C`` (models/README.md "Downsampling") plus the next stage's position embedding.

    ``plain=False``: ``RPReLU(BN(conv(BN(X) + m)) + tile(avgpool(BN(X))))``; ``plain=True`` (the thesis'
    FP-downsampling row): ``BN(conv(BN(X)))`` with no shortcut and no RPReLU.
    """

    folds: ClassVar[tuple[Fold, ...]] = (Fold("shift", "conv", "out_norm"),)

    def __init__(self, name: str, dim: int, out_dim: int, out_size: int, precision: str, plain: bool):
        super().__init__()
        self.plain = plain
        self.norm = nn.BatchNorm2d(dim)
        self.shift = nn.Identity() if plain else LearnableShift(dim, channel_dim=1)
        self.conv = BinaryConv2d(dim, out_dim, 2, stride=2, precision=precision)
        self.out_norm = nn.BatchNorm2d(out_dim)
        self.act = nn.Identity() if plain else RPReLU(out_dim, channel_dim=1)
        self.pos = nn.Parameter(trunc_normal_(torch.zeros(1, out_dim, out_size, out_size), std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.norm(x)
        y = self.out_norm(self.conv(self.shift(u)))
        if not self.plain:
            ratio = y.shape[1] // u.shape[1]
            y = self.act(y + F.avg_pool2d(u, 2).repeat(1, ratio, 1, 1))
        return y + self.pos

    def deploy_form(self, ops: BinaryOps) -> nn.Module:
        """This block with its shift and output BN folded into a binary conv."""
        fold_binary(self, ops, self.folds)
        return self


class Stem(nn.Module):
    """Patchify conv (with bias) -> BN -> exact GELU -> + position embedding (FP)."""

    def __init__(self, cfg: BHViTCfg):
        super().__init__()
        dim, size = cfg.dims[0], cfg.map_sizes[0]
        self.conv = nn.Conv2d(cfg.in_chans, dim, cfg.patch_size, stride=cfg.patch_size)
        self.norm = nn.BatchNorm2d(dim)
        self.pos = nn.Parameter(trunc_normal_(torch.zeros(1, dim, size, size), std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(self.conv(x))) + self.pos

    def deploy_form(self, ops: BinaryOps) -> nn.Module:
        """The patchify conv as one patch conv op (a matmul of the patches)."""
        self.conv = PatchifyConv(self.conv, ops)
        return self


@dataclass(frozen=True)
class BinaryLayerInfo:
    """One quantisable layer as the compiler and cost model see it."""

    name: str
    kind: str  # "linear", "conv2d" or "attention"
    weight_shape: tuple[int, ...] | None
    precision: str


class BHViT(nn.Module):
    """BHViT-Tiny family. Build with :func:`bhvit.models.build_model` or directly from a :class:`BHViTCfg`."""

    def __init__(self, cfg: BHViTCfg):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        n_blocks = sum(cfg.depths)
        rates = [cfg.drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        self.stem = Stem(cfg)
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        dims, mlps, sizes = cfg.dims, cfg.mlp_dims, cfg.map_sizes
        k = 0
        for i, depth in enumerate(cfg.depths):
            blocks = nn.ModuleList()
            for j in range(depth):
                name = f"stages.{i}.blocks.{j}"
                if cfg.attention_stages[i]:
                    blocks.append(
                        MSMHABlock(name, dims[i], mlps[i], cfg.heads[i], cfg.stage_window(i), sizes[i], cfg, rates[k])
                    )
                else:
                    blocks.append(MSGDCBlock(name, dims[i], mlps[i], cfg, rates[k]))
                k += 1
            self.stages.append(_Stage(blocks))
            if i + 1 < len(cfg.depths):
                precision = "fp32" if cfg.fp_downsample else cfg.precision.precision_of(f"downsamples.{i}.conv")
                self.downsamples.append(
                    Downsample(
                        f"downsamples.{i}", dims[i], dims[i + 1], sizes[i + 1], precision, plain=cfg.fp_downsample
                    )
                )
        self.head_norm = nn.BatchNorm1d(dims[-1])
        self.head = nn.Linear(dims[-1], cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(_bn_tokens(self.head_norm, map_to_tokens(x)).mean(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def quant_layers(self) -> list[tuple[str, nn.Module]]:
        """Every precision-carrying module (binary or FP): linear/conv layers and attention products."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, (QuantLayer, AttentionProducts))]

    def binary_layers(self) -> list[BinaryLayerInfo]:
        """Names, kinds, weight shapes and precision of the quantisable layers, for the compiler and reports."""
        out = []
        for name, m in self.quant_layers():
            if isinstance(m, AttentionProducts):
                out.append(BinaryLayerInfo(name, "attention", None, m.precision))
            else:
                kind = "conv2d" if isinstance(m, nn.Conv2d) else "linear"
                out.append(BinaryLayerInfo(name, kind, tuple(m.weight.shape), m.precision))
        return out

    def regularization_loss(self) -> torch.Tensor:
        """L_re: mean over binary MSGDC convs, q/k/v, output projections and fc1/fc2 of ``mean(| |W| - 1 |)``.

        Downsampling convs are excluded (train/README.md, "Loss"). Zero when the model has no such binary layer.
        """
        terms = [
            (m.weight.abs() - 1).abs().mean()
            for name, m in self.quant_layers()
            if isinstance(m, QuantLayer) and m.is_binary and not name.startswith("downsamples.")
        ]
        if not terms:
            return self.head.weight.new_zeros(())
        return torch.stack(terms).mean()

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith(".pos")}


class _Stage(nn.Module):
    """A sequence of blocks (kept as ``blocks`` so module names read ``stages.i.blocks.j``)."""

    def __init__(self, blocks: nn.ModuleList):
        super().__init__()
        self.blocks = blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x
