"""Deploy form of a BHViT: every block replaced by its own deploy form, whose binary products call ``ops``.

The blocks know their folds (``deploy_form`` beside each ``forward`` in :mod:`bhvit.models.bhvit`, built with
:func:`bhvit.models.layers.fold_binary`); this module only walks the model. The input model is not modified.
"""

from __future__ import annotations

import copy

import torch
from bhvit.models.bhvit import AttentionProducts
from bhvit.models.layers import CUSTOM, BinaryOps, Deployable, QuantLayer
from torch import nn

__all__ = ["to_deploy"]


@torch.no_grad()
def to_deploy(model: nn.Module, ops: BinaryOps = CUSTOM) -> nn.Module:
    """An eval-mode copy of ``model`` in which every binary product calls ``ops`` (default: the custom ops)."""
    model = copy.deepcopy(model).eval()
    _deploy_children(model, ops)
    left = [n for n, m in model.named_modules() if isinstance(m, (QuantLayer, AttentionProducts)) and m.is_binary]
    if left:
        raise TypeError(f"binary modules without a deploy form: {left}")
    return model


def _deploy_children(module: nn.Module, ops: BinaryOps) -> None:
    for name, child in module.named_children():
        if isinstance(child, Deployable):
            child = child.deploy_form(ops)
            setattr(module, name, child)
        _deploy_children(child, ops)
