"""Configuration dataclasses for BHViT: architecture, widths and the per-layer precision map."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field

__all__ = ["PrecisionCfg", "BHViTCfg", "PRECISION_PRESETS", "resolve_precision", "ConfigError"]

PRECISIONS = ("binary", "fp32")


class ConfigError(ValueError):
    """An invalid model configuration; the message says what to change."""


@dataclass(frozen=True)
class PrecisionCfg:
    """Which layers are binary.

    ``default`` applies to every quantisable layer (the MSGDC convs, q/k/v, output projections, fc1/fc2,
    downsampling convs and the attention products). ``overrides`` are ``(glob, precision)`` pairs matched with
    :func:`fnmatch.fnmatch` against module names such as ``stages.3.blocks.0.attn.q`` or ``downsamples.1.conv``;
    the last matching pair wins.
    """

    default: str = "binary"
    overrides: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for p in (self.default, *(p for _, p in self.overrides)):
            if p not in PRECISIONS:
                raise ConfigError(f"unknown precision {p!r}; use one of {', '.join(PRECISIONS)}")

    def precision_of(self, name: str) -> str:
        result = self.default
        for pattern, precision in self.overrides:
            if fnmatch.fnmatch(name, pattern):
                result = precision
        return result


# Named precision maps: the thesis variants and the mixed-precision candidates of the budget search.
PRECISION_PRESETS: dict[str, PrecisionCfg] = {
    "binary": PrecisionCfg("binary"),
    "fp32": PrecisionCfg("fp32"),
    # FP downsampling convs (the structure change of the thesis' "FP downsampling" row is BHViTCfg.fp_downsample).
    "binary_fpds": PrecisionCfg("binary", (("downsamples.*", "fp32"),)),
    "binary_fp_s3attn": PrecisionCfg("binary", (("stages.3.blocks.*.attn.*", "fp32"),)),
    "binary_fp_first": PrecisionCfg("binary", (("stages.0.blocks.0.*", "fp32"),)),
}


def resolve_precision(precision: str | PrecisionCfg) -> PrecisionCfg:
    """Turn a preset name (``"binary"``, ``"fp32"``, ``"fp"``, ``"binary_fpds"``, ...) into a PrecisionCfg."""
    if isinstance(precision, PrecisionCfg):
        return precision
    key = {"fp": "fp32", "float": "fp32", "bin": "binary"}.get(precision, precision).replace("-", "_")
    if key not in PRECISION_PRESETS:
        hint = difflib.get_close_matches(key, PRECISION_PRESETS, n=1)
        raise ConfigError(
            f"unknown precision preset {precision!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" (presets: {', '.join(PRECISION_PRESETS)})"
        )
    return PRECISION_PRESETS[key]


@dataclass(frozen=True)
class BHViTCfg:
    """BHViT architecture. Stage widths are ``base_dims * hidden_width``, MLP widths ``base_mlp * intermediate_width``.

    ``width`` sets both multipliers unless ``hidden_width`` / ``intermediate_width`` are given. ``window`` is the
    attention window of stages 2-3; on small inputs a stage whose map is smaller than the window uses the whole
    map as one window.
    """

    width: float = 1.0
    hidden_width: float | None = None
    intermediate_width: float | None = None
    base_dims: tuple[int, ...] = (64, 128, 256, 512)
    base_mlp: tuple[int, ...] = (512, 1024, 1024, 2048)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    heads: tuple[int, ...] = (1, 1, 4, 8)
    attention_stages: tuple[bool, ...] = (False, False, True, True)
    window: int = 7
    patch_size: int = 4
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 37
    drop_path_rate: float = 0.1
    precision: PrecisionCfg = field(default_factory=PrecisionCfg)
    fp_downsample: bool = False
    recu: bool = True
    shift3: bool = True
    shift5: bool = True
    attn_levels: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.precision, str):
            object.__setattr__(self, "precision", resolve_precision(self.precision))
        n = len(self.depths)
        for name in ("base_dims", "base_mlp", "heads", "attention_stages"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"{name} has {len(getattr(self, name))} entries but depths has {n}")
        for name in ("width", "hidden_width", "intermediate_width"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"{name} must be positive, got {v}")
        dims, mlp = self.dims, self.mlp_dims
        for i, (c, m, h) in enumerate(zip(dims, mlp, self.heads)):
            if c % 4:
                raise ConfigError(
                    f"stage {i} has {c} channels, not divisible by 4 (grouped convs and the 4-way "
                    f"channel shift need it); choose a hidden width that makes {self.base_dims[i]}*w "
                    f"a multiple of 4"
                )
            if c % h:
                raise ConfigError(
                    f"stage {i} has {c} channels, not divisible by its {h} heads; change the width or the heads"
                )
            if m % c:
                raise ConfigError(
                    f"stage {i} MLP width {m} is not a multiple of its {c} channels (the MLP "
                    f"shortcuts tile/pool by I/C); change intermediate_width or hidden_width"
                )
        for i in range(1, n):
            if dims[i] != 2 * dims[i - 1]:
                raise ConfigError(
                    f"stage {i} has {dims[i]} channels but the downsampling shortcut needs twice "
                    f"stage {i - 1} ({2 * dims[i - 1]})"
                )
        reduction = self.patch_size * 2 ** (n - 1)
        if self.img_size % reduction:
            raise ConfigError(
                f"img_size {self.img_size} must be a multiple of patch_size*2^{n - 1} = {reduction}; "
                f"try {max(reduction, round(self.img_size / reduction) * reduction)}"
            )
        for i, (size, attn) in enumerate(zip(self.map_sizes, self.attention_stages)):
            if attn:
                win = self.stage_window(i)
                if size % win:
                    raise ConfigError(
                        f"stage {i} map is {size}x{size}, not divisible by the attention window "
                        f"{win}; choose an img_size whose stage maps are multiples of the window "
                        f"(224 for window 7) or change window"
                    )
                if win % 2 == 0 and win != size:
                    raise ConfigError(
                        f"stage {i}: an even window ({win}) smaller than the map is not supported "
                        f"(global-token pooling needs an odd window); use an odd window"
                    )
        if not 0 <= self.drop_path_rate < 1:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def dims(self) -> tuple[int, ...]:
        w = self.hidden_width if self.hidden_width is not None else self.width
        return tuple(int(round(c * w)) for c in self.base_dims)

    @property
    def mlp_dims(self) -> tuple[int, ...]:
        w = self.intermediate_width if self.intermediate_width is not None else self.width
        return tuple(int(round(m * w)) for m in self.base_mlp)

    @property
    def map_sizes(self) -> tuple[int, ...]:
        first = self.img_size // self.patch_size
        return tuple(first // 2**i for i in range(len(self.depths)))

    def stage_window(self, stage: int) -> int:
        return min(self.window, self.map_sizes[stage])

    @property
    def is_binary(self) -> bool:
        """True when any quantisable layer is binary (decides the 16- vs 32-bit FP weight convention)."""
        return self.precision.default == "binary" or any(p == "binary" for _, p in self.precision.overrides)

    def replace(self, **overrides) -> BHViTCfg:
        """``dataclasses.replace`` with a helpful error for unknown field names."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                raise ConfigError(f"unknown config field {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["precision"] = {"default": self.precision.default, "overrides": [list(o) for o in self.precision.overrides]}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BHViTCfg:
        d = dict(d)
        p = d.pop("precision", None)
        if isinstance(p, dict):
            d["precision"] = PrecisionCfg(p["default"], tuple(tuple(o) for o in p.get("overrides", ())))
        elif p is not None:
            d["precision"] = resolve_precision(p)
        for k, v in list(d.items()):
            if isinstance(v, list):
                d[k] = tuple(v)
        return cls().replace(**d)
