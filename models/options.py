"""The model options every CLI shares (``--model``, ``--width``, ``--precision``, ``--img-size``, ...), declared once.

A default of ``None`` means "the named model's value", so ``--model test_bhvit`` gets 64 px and 10 classes in
every command. :func:`model_options` adds the options to a click command; :func:`model_overrides` turns their
values into :func:`~bhvit.models.factory.resolve_config` keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from .config import PRECISION_PRESETS
from .factory import list_models

__all__ = ["MODEL_OPTION_NAMES", "model_options", "model_overrides"]

_MODEL_VALUE = " [default: the model's]"
# name -> (option declarations, click.option keyword arguments); the order is the order in --help.
_OPTIONS: dict[str, tuple[tuple[str, ...], dict]] = {
    "model": (
        ("--model",),
        {"default": "bhvit_tiny", "show_default": True, "help": "Named architecture."},
    ),
    "precision": (
        ("--precision",),
        {"help": f"Precision preset: {', '.join(PRECISION_PRESETS)} (fp = fp32) [default: binary]."},
    ),
    "width": (
        ("--width",),
        {"type": float, "help": "Width multiplier w of stage and MLP widths." + _MODEL_VALUE},
    ),
    "hidden_width": (
        ("--hidden-width",),
        {"type": float, "help": "Stage-width multiplier only (overrides --width)." + _MODEL_VALUE},
    ),
    "intermediate_width": (
        ("--intermediate-width",),
        {"type": float, "help": "MLP-width multiplier only (overrides --width)." + _MODEL_VALUE},
    ),
    "fp_downsample": (
        ("--fp-downsample",),
        {"is_flag": True, "help": "Plain FP downsampling convs (the thesis' 'FP downsampling' row)."},
    ),
    "num_classes": (
        ("--num-classes",),
        {"type": click.IntRange(min=1), "help": "Classifier outputs." + _MODEL_VALUE},
    ),
    "img_size": (
        ("--img-size",),
        {"type": click.IntRange(min=1), "help": "Input resolution in pixels." + _MODEL_VALUE},
    ),
}
MODEL_OPTION_NAMES = tuple(_OPTIONS)


def model_options(
    names: tuple[str, ...] = MODEL_OPTION_NAMES, note: str = "", any_model: bool = False, **changes: dict
) -> Callable:
    """A decorator adding the shared model options ``names`` to a click command.

    ``note`` is appended to every help text (e.g. " (with --random-init)"); ``any_model`` lets ``--model`` name a
    timm model too (otherwise it is a choice of the registered BHViT names); ``changes`` overrides click keyword
    arguments per option, e.g. ``width={"multiple": True}``.
    """

    def decorate(command: Callable) -> Callable:
        for name in reversed(names):
            decls, kwargs = _OPTIONS[name]
            kwargs = {**kwargs, **changes.get(name, {})}
            if name == "model" and not any_model:
                kwargs.setdefault("type", click.Choice(list_models()))
            kwargs["help"] = kwargs["help"] + note
            command = click.option(*decls, **kwargs)(command)
        return command

    return decorate


def model_overrides(**values) -> dict:
    """``resolve_config`` overrides from model option values: unset options (``None``, an unset flag) are left out."""
    return {k: v for k, v in values.items() if k in _OPTIONS and k != "model" and v not in (None, False, ())}
