"""PyTorch BHViT -> Relax IRModule with bit-packed binary kernels.

Route (``compile/README.md``, "Lowering"): :func:`~bhvit.compile.deploy.to_deploy` puts every binary product behind a
``bhvit::binary_*`` custom op (defined in :mod:`bhvit.models.layers.deploy_ops`), ``torch.export`` keeps each op as
one node, and ``from_exported_program`` converts those nodes with :class:`BinaryConverters`, which read the folded
constants (signs, shifts, scales, biases) from the exported program's state and emit the kernels with
:mod:`~bhvit.compile.kernels.relax_emit`; average and max pools with kernel = stride (the downsampling shortcut,
the attention's global tokens) also become kernels. Everything else is imported by TVM's own converters and stays FP
(scheduled later by :mod:`bhvit.compile.schedule`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import fx, nn

from .deploy import to_deploy
from .kernels import relax_emit as _kernels
from .targets import TargetSpec

__all__ = ["export_program", "BinaryConverters", "to_relax", "lower"]

# aten.avg_pool2d's arguments after the kernel size: stride, padding, ceil_mode, count_include_pad, divisor_override
# (torch.export drops the trailing ones left at their default)
_AVG_POOL_DEFAULTS = ([], 0, False, True, None)
# aten.max_pool2d's after the kernel size: stride, padding, dilation, ceil_mode
_MAX_POOL_DEFAULTS = ([], 0, 1, False)


def _pair(value) -> list[int]:
    """A pool argument given as an int or a list of one or two ints, as two ints."""
    values = [value] if isinstance(value, int) else list(value)
    return values * 2 if len(values) == 1 else values


@torch.no_grad()
def export_program(model: nn.Module, input_shape: tuple[int, ...]) -> torch.export.ExportedProgram:
    """``torch.export`` of the deploy form of ``model`` for a fixed input shape."""
    deploy = to_deploy(model)
    return torch.export.export(deploy, (torch.zeros(input_shape),))


class BinaryConverters:
    """``custom_convert_map`` entries for the ``bhvit::*`` ops (binary products, FP patch conv and stencil add) and
    the average and max pools of one exported program."""

    def __init__(self, ep: torch.export.ExportedProgram, target):
        sig = ep.graph_signature
        lifted = {**sig.inputs_to_parameters, **sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants}
        tensors = {**ep.state_dict, **ep.constants}
        self._values = {placeholder: tensors[fqn] for placeholder, fqn in lifted.items()}
        self.target = target

    def const(self, arg: fx.Node | None) -> np.ndarray | None:
        """The value of a lifted parameter/buffer argument (``None`` stays ``None``)."""
        return None if arg is None else self._values[arg.name].detach().cpu().numpy()

    def linear(self, node: fx.Node, importer):
        # torch.export drops trailing arguments left at their default (None)
        x, signs, shift, scale, bias, residual, act = (*node.args, None, None)[:7]
        return _kernels.emit_binary_dense(
            importer.block_builder,
            importer.env[x],
            weight_signs=self.const(signs),
            threshold=self.const(shift),
            scale=self.const(scale),
            bias=self.const(bias),
            target=self.target,
            residual=None if residual is None else importer.env[residual],
            act=self.const(act),
        )

    def _weights(self, signs, shift, scale, bias, act) -> _kernels.DenseWeights:
        return _kernels.DenseWeights(*(self.const(t) for t in (signs, shift, scale, bias, act)))

    def mlp(self, node: fx.Node, importer):
        z, fc1, fc2, ratio = node.args[0], node.args[1:6], node.args[6:11], node.args[11]
        return _kernels.emit_binary_mlp(
            importer.block_builder,
            importer.env[z],
            fc1=self._weights(*fc1),
            fc2=self._weights(*fc2),
            ratio=ratio,
            target=self.target,
        )

    def conv2d(self, node: fx.Node, importer):
        x, signs, shift, scale, bias, stride, padding, dilation, groups = node.args
        return _kernels.emit_binary_conv2d(
            importer.block_builder,
            importer.env[x],
            weight_signs=self.const(signs),
            threshold=self.const(shift),
            scale=self.const(scale),
            bias=self.const(bias),
            stride=tuple(stride),
            padding=tuple(padding),
            dilation=tuple(dilation),
            groups=groups,
            layout="NCHW",
            target=self.target,
        )

    def head_split(self, node: fx.Node, importer) -> _kernels.HeadSplit | None:
        """Where an attention operand is ``permute(view(x [+ view(shift)], (B, n, H, d)), (0, 2, 1, 3))`` (the
        exported deploy form's head split of the shifted q, k or v tokens), its source: the packs then read ``x`` and
        add ``shift`` (a lifted parameter) themselves. None for any other producer."""
        if node.target != torch.ops.aten.permute.default or list(node.args[1]) != [0, 2, 1, 3]:
            return None
        split = node.args[0]
        if split.target != torch.ops.aten.view.default:
            return None
        x, shift = split.args[0], None
        b, n, h, d = (int(s) for s in split.args[1])
        if [int(s) for s in importer.env[x].ty.shape] != [b, n, h * d]:
            return None
        if x.target == torch.ops.aten.add.Tensor and isinstance(x.args[1], fx.Node) and x.kwargs.get("alpha", 1) == 1:
            view, source = x.args[1], x.args[0]
            per_channel = view.target == torch.ops.aten.view.default and view.args[0].name in self._values
            if per_channel and [int(s) for s in importer.env[source].ty.shape] == [b, n, h * d]:
                values = self.const(view.args[0])
                if values.size == h * d:  # one value per channel, broadcast over the tokens
                    x, shift = source, values.reshape(-1)
        return _kernels.HeadSplit(importer.env[x], shift)

    def qk(self, node: fx.Node, importer):
        q, k = node.args
        return _kernels.emit_binary_qk(
            importer.block_builder,
            importer.env[q],
            importer.env[k],
            target=self.target,
            sources=(self.head_split(q, importer), self.head_split(k, importer)),
        )

    def av(self, node: fx.Node, importer):
        levels, v = node.args
        return _kernels.emit_binary_av(
            importer.block_builder,
            importer.env[levels],
            importer.env[v],
            target=self.target,
            source=self.head_split(v, importer),
        )

    def patch_conv(self, node: fx.Node, importer):
        x, weight, bias, k = node.args
        return _kernels.emit_patch_conv(
            importer.block_builder,
            importer.env[x],
            weight=self.const(weight),
            bias=self.const(bias),
            k=k,
            target=self.target,
        )

    def stencil_add(self, node: fx.Node, importer):
        x, tokens, taps, token_scale, bias = node.args
        return _kernels.emit_stencil_add(
            importer.block_builder,
            importer.env[x],
            importer.env[tokens],
            taps=self.const(taps),
            token_scale=self.const(token_scale),
            bias=self.const(bias),
            target=self.target,
        )

    def avg_pool2d(self, node: fx.Node, importer):
        """A float32 4-D pool with kernel = stride, padding counted in the divisor, no ``ceil_mode`` and no divisor
        override: the ``pool`` kernel (mean); otherwise TVM's own conversion."""
        _, kernel, *rest = node.args
        stride, padding, ceil_mode, count_include_pad, divisor = (*rest, *_AVG_POOL_DEFAULTS[len(rest) :])
        plain = not ceil_mode and divisor is None and (count_include_pad or set(_pair(padding)) == {0})
        pool = self._pool(node, importer, "mean", kernel, stride, padding, plain)
        return importer._avg_pool2d(node) if pool is None else pool

    def max_pool2d(self, node: fx.Node, importer):
        """A float32 4-D max pool with kernel = stride, no dilation and no ``ceil_mode``: the ``pool`` kernel (max);
        otherwise TVM's own conversion. The exported program's decomposition writes every max pool as
        ``max_pool2d_with_indices``; as in TVM's conversion, the indices (which the model never reads) are zeros."""
        from tvm import relax

        _, kernel, *rest = node.args
        stride, padding, dilation, ceil_mode = (*rest, *_MAX_POOL_DEFAULTS[len(rest) :])
        plain = not ceil_mode and set(_pair(dilation)) == {1}
        pool = self._pool(node, importer, "max", kernel, stride, padding, plain)
        if pool is None:
            return importer._max_pool2d_with_indices(node)
        return importer.block_builder.emit(relax.Tuple([pool, relax.op.zeros_like(pool)]))

    def _pool(self, node: fx.Node, importer, reduce: str, kernel, stride, padding, plain: bool):
        """The pool kernel's call when the pool is one (square, kernel = stride, one padding on every side, float32
        4-D, arguments in their slots, within :class:`~.kernels.params.PoolParams`' limits), else ``None``."""
        ks, pads = set(_pair(kernel)) | set(_pair(stride or kernel)), set(_pair(padding))
        value = node.args[0].meta["val"]
        if not (plain and len(ks) == 1 and len(pads) == 1 and not node.kwargs):
            return None
        if value.dim() != 4 or value.dtype != torch.float32:
            return None
        x, k, pad = importer.env[node.args[0]], ks.pop(), pads.pop()
        try:  # PoolParams, built before anything is emitted, refuses padding over k / 2 and a map under one window
            return _kernels.emit_pool(importer.block_builder, x, k=k, padding=pad, reduce=reduce)
        except ValueError:
            return None

    def convert_map(self) -> dict:
        return {
            "binary_linear.default": self.linear,
            "binary_mlp.default": self.mlp,
            "binary_conv2d.default": self.conv2d,
            "binary_qk.default": self.qk,
            "binary_av.default": self.av,
            "patch_conv.default": self.patch_conv,
            "stencil_add.default": self.stencil_add,
            "avg_pool2d.default": self.avg_pool2d,
            "max_pool2d_with_indices.default": self.max_pool2d,
        }


def to_relax(ep: torch.export.ExportedProgram, target):
    """Import an exported deploy program into Relax (weights as constants, binary ops as kernels)."""
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    mod = from_exported_program(
        ep,
        keep_params_as_input=False,
        unwrap_unit_return_tuple=True,
        custom_convert_map=BinaryConverters(ep, target).convert_map(),
    )
    return relax.transform.DeadCodeElimination()(mod)


def lower(model: nn.Module, target: TargetSpec, input_shape: tuple[int, ...]):
    """The Relax IRModule of ``model`` for ``target`` (``main`` takes one float32 NCHW tensor of ``input_shape``)."""
    ep = export_program(model, input_shape)
    return to_relax(ep, target.tvm_target())
