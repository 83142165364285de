"""Deploy forms: what a block becomes for the compiler, and the folds that build it.

A block that has a deploy form defines ``deploy_form(ops)`` next to its ``forward`` (see :class:`Deployable`). Most
fold their FP glue into binary layers with :func:`fold_binary`: a learned shift ``x + b`` right before a binary layer
moves into the layer's sign (exact), and ``alpha``, the layer's bias and the eval BatchNorm right after it become one
``scale``/``bias`` per output channel of the kernel epilogue (FP32 reassociation only). A block declares those
chains as :class:`Fold` entries; they are only valid if its forward computes ``norm(layer(shift(x)))`` with the
shift feeding nothing else, which :func:`fold_binary` checks on a ``torch.fx`` trace of the forward before folding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import fx, nn

from .binary import QuantLayer
from .deploy_ops import BinaryOps
from .elementwise import LearnableShift

__all__ = ["Deployable", "Fold", "FoldError", "fold_binary"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_RESHAPES = ("reshape", "view")


@runtime_checkable
class Deployable(Protocol):
    def deploy_form(self, ops: BinaryOps) -> nn.Module:
        """The deploy form of this eval-mode module: the same function, binary products as ``ops`` calls.

        Built in place: the module's children move into (or are replaced inside) the result, so call it on a copy.
        """


class FoldError(ValueError):
    """A block's declared fold does not match what its forward computes."""


@dataclass(frozen=True)
class Fold:
    """``norm(layer(shift(x)))`` inside a block, by attribute names.

    ``layer`` is one binary layer or a ``ModuleList`` of parallel ones that all read the shift; ``norm`` (one layer
    only) is the BatchNorm applied to the layer's output, possibly through reshapes, or ``None``.
    """

    shift: str
    layer: str
    norm: str | None = None


def fold_binary(block: nn.Module, ops: BinaryOps, folds: tuple[Fold, ...]) -> bool:
    """Replace the binary layers of ``folds`` in ``block`` by their deploy forms with the shift and norm folded in.

    A fold applies when all its layers are binary; its shift folds if it is a :class:`LearnableShift` and its norm
    if it is a BatchNorm, and each is then replaced by ``nn.Identity``. Returns whether every fold applied and left
    no shift or norm behind. Raises :class:`FoldError` when the forward does not apply them back to back.
    """
    if block.training:
        raise FoldError(f"{type(block).__name__}: deploy forms fold eval-mode BatchNorm statistics; call .eval() first")
    calls = _module_calls(block)
    complete = True
    for fold in folds:
        layer_or_list = getattr(block, fold.layer)
        is_list = isinstance(layer_or_list, nn.ModuleList)
        layers = list(layer_or_list) if is_list else [layer_or_list]
        if not all(isinstance(m, QuantLayer) and m.is_binary for m in layers):
            complete = False
            continue
        shift = getattr(block, fold.shift)
        shift = shift if isinstance(shift, LearnableShift) else None
        norm = getattr(block, fold.norm) if fold.norm else None
        norm = norm if isinstance(norm, _NORMS) else None
        targets = [f"{fold.layer}.{i}" for i in range(len(layers))] if is_list else [fold.layer]
        _check(type(block).__name__, calls, fold, targets, shift is not None, norm is not None)
        new = [m.deploy_form(ops, None if shift is None else shift.bias.detach(), norm) for m in layers]
        setattr(block, fold.layer, nn.ModuleList(new) if is_list else new[0])
        if shift is not None:
            setattr(block, fold.shift, nn.Identity())
        if norm is not None:
            setattr(block, fold.norm, nn.Identity())
        complete &= isinstance(getattr(block, fold.shift), nn.Identity) and (
            fold.norm is None or isinstance(getattr(block, fold.norm), nn.Identity)
        )
    return complete


class _ChildrenAsLeaves(fx.Tracer):
    """Traces only the block's own forward: every submodule call is one node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _module_calls(block: nn.Module) -> dict[str, list[fx.Node]]:
    try:
        graph = _ChildrenAsLeaves().trace(block)
    except Exception as e:  # a forward fx cannot trace cannot be checked, so it is not folded
        raise FoldError(f"{type(block).__name__}: cannot trace its forward to check the folds ({e})") from e
    calls: dict[str, list[fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)
    return calls


def _reads_shape(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target is getattr and node.args[1] == "shape") or (
        node.op == "call_method" and node.target == "size"
    )


def _check(
    name: str, calls: dict[str, list[fx.Node]], fold: Fold, targets: list[str], with_shift: bool, with_norm: bool
) -> None:
    """Raise :class:`FoldError` unless the traced forward computes ``norm(layer(shift(x)))`` for each layer."""

    def only_call(target: str) -> fx.Node:
        nodes = calls.get(target, [])
        if len(nodes) != 1:
            raise FoldError(f"{name}.{target} is called {len(nodes)} times in forward; a fold needs exactly one call")
        return nodes[0]

    layers = [only_call(t) for t in targets]
    if with_shift:
        shift = only_call(fold.shift)
        for target, node in zip(targets, layers):
            if node.args != (shift,) or node.kwargs:
                raise FoldError(f"{name}.{target} does not read {fold.shift}'s output alone")
        if set(shift.users) != set(layers):
            raise FoldError(f"{name}.{fold.shift}'s output feeds more than {fold.layer}")
    if with_norm:
        if len(layers) != 1:
            raise FoldError(f"{name}: a norm folds into one layer, {fold.layer} has {len(layers)}")
        norm, value = only_call(fold.norm), layers[0]
        while True:
            users = [u for u in value.users if not _reads_shape(u)]
            if len(users) != 1:
                raise FoldError(f"{name}: {targets[0]}'s output feeds {len(users)} nodes, not only {fold.norm}")
            (user,) = users
            if user is norm and user.args == (value,):
                break
            if not (user.op == "call_method" and user.target in _RESHAPES and user.args[0] is value):
                raise FoldError(f"{name}: {targets[0]}'s output reaches {fold.norm} through {user.format_node()}")
            value = user
