"""Shape parameters shared by the TE computes, the schedules and the numpy references.

(:class:`WindowParams`, :class:`PoolParams`, :class:`PatchConvParams` and :class:`StencilParams` describe the FP32
kernels: the mean and max pools, an FP conv with kernel = stride, as a patch matmul, and the blocks' stencil add.)

Every binary op packs its reduction axis into 64-bit words (:data:`WORD_BITS`). Bits past the end
of the axis are 0 on both operands, so they XOR to 0 and add nothing to a popcount.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "WORD_BITS",
    "ROW_LANES",
    "LEVELS",
    "words",
    "DenseParams",
    "Conv2dParams",
    "AttentionParams",
    "WindowParams",
    "PoolParams",
    "PatchConvParams",
    "StencilParams",
]

WORD_BITS = 64
ROW_LANES = 8  # a conv tiles NCHW output rows when they fill whole 512-bit vectors of words
LEVELS = 3  # attention levels 0..3, one {0, 1} mask ``level >= t`` per t = 1..LEVELS


def words(bits: int) -> int:
    """Number of 64-bit words that hold ``bits`` bits."""
    return -(-bits // WORD_BITS)


@dataclass(frozen=True)
class DenseParams:
    """y[m, n] = sum_k sign(x[m, k]) * w[n, k]: ``m`` rows, ``k`` inputs, ``n`` outputs."""

    m: int
    k: int
    n: int

    def __post_init__(self) -> None:
        if min(self.m, self.k, self.n) < 1:
            raise ValueError(f"DenseParams needs positive sizes, got {self}")

    @property
    def k_words(self) -> int:
        return words(self.k)


@dataclass(frozen=True)
class Conv2dParams:
    """Binary 2-D convolution, torch ``F.conv2d`` semantics with zero padding after the sign."""

    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"channels must divide by groups={self.groups}: {self}")
        if self.out_height < 1 or self.out_width < 1:
            raise ValueError(f"empty output for {self}")

    def _out_size(self, axis: int) -> int:
        size = (self.height, self.width)[axis]
        span = self.dilation[axis] * (self.kernel[axis] - 1) + 1
        return (size + 2 * self.padding[axis] - span) // self.stride[axis] + 1

    @property
    def out_height(self) -> int:
        return self._out_size(0)

    @property
    def out_width(self) -> int:
        return self._out_size(1)

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def group_words(self) -> int:
        """Words per pixel and group: each group's channels start a fresh word."""
        return words(self.in_per_group)

    @property
    def taps(self) -> int:
        """Inputs summed per output value (counting padded taps)."""
        return self.in_per_group * self.kernel[0] * self.kernel[1]

    def tap_in_bounds(self, out_index: int, tap: int, axis: int) -> bool:
        """Whether kernel tap ``tap`` of output row/col ``out_index`` reads inside the input."""
        size = (self.height, self.width)[axis]
        pos = out_index * self.stride[axis] + tap * self.dilation[axis] - self.padding[axis]
        return 0 <= pos < size

    def border_classes(self, axis: int) -> tuple[list[int], list[tuple[bool, ...]]]:
        """Group output rows (axis 0) or columns (axis 1) by which kernel taps read inside the input.

        Returns the class index of every output row/column and, per class, the in-bounds flag of each tap.
        """
        n_out = (self.out_height, self.out_width)[axis]
        patterns: dict[tuple[bool, ...], int] = {}
        index = [
            patterns.setdefault(tuple(self.tap_in_bounds(o, t, axis) for t in range(self.kernel[axis])), len(patterns))
            for o in range(n_out)
        ]
        return index, list(patterns)

    def tiles_rows(self, layout: str) -> bool:
        """Whether the conv's GEMM tile runs along output rows (NCHW whose rows fill whole vectors of
        :data:`ROW_LANES` words): output channels x columns, so the NCHW stores are contiguous; else columns x
        output channels."""
        return layout == "NCHW" and self.out_width % ROW_LANES == 0

    @property
    def reads_padding(self) -> bool:
        """Whether any output reads a padded tap (then the conv pads its input and corrects the border)."""
        return any(
            not self.tap_in_bounds(o, t, a)
            for a, (n_out, n_tap) in enumerate(((self.out_height, self.kernel[0]), (self.out_width, self.kernel[1])))
            for o in (0, n_out - 1)
            for t in range(n_tap)
        )


@dataclass(frozen=True)
class AttentionParams:
    """Binary attention products on (batch, heads, tokens, dim) tensors."""

    batch: int
    heads: int
    tokens: int
    dim: int

    @property
    def dim_words(self) -> int:
        return words(self.dim)

    @property
    def token_words(self) -> int:
        return words(self.tokens)

    @property
    def level_words(self) -> int:
        """The words an A·V sum runs over: a token word per level mask."""
        return LEVELS * self.token_words


@dataclass(frozen=True)
class WindowParams:
    """Non-overlapping ``k x k`` windows (stride ``k``) of a (batch, channels, height, width) map of at least one
    window (no padding here; :class:`PoolParams` adds it)."""

    batch: int
    channels: int
    height: int
    width: int
    k: int

    def __post_init__(self) -> None:
        if min(self.batch, self.channels, self.k) < 1 or self.height < self.k or self.width < self.k:
            raise ValueError(f"{type(self).__name__} needs positive sizes and a map of at least one window, got {self}")

    @property
    def grid(self) -> tuple[int, int]:
        """Windows per column and per row (a partial window at the border is dropped, as conv and pool do)."""
        return self.height // self.k, self.width // self.k


_POOL_REDUCTIONS = ("mean", "max")


@dataclass(frozen=True)
class PoolParams(WindowParams):
    """An FP32 pool with kernel = stride = ``k``: the ``reduce`` (``"mean"`` or ``"max"``) of each window of the map
    bordered by ``padding`` on every side. The border holds zeros that the mean counts (its divisor is always
    ``k * k``, as ``avg_pool2d``'s ``count_include_pad``) and -inf for the max; a partial window at the far border
    is dropped."""

    padding: int = 0
    reduce: str = "mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reduce not in _POOL_REDUCTIONS:
            raise ValueError(f"PoolParams.reduce must be one of {_POOL_REDUCTIONS}, got {self.reduce!r}")
        if not 0 <= 2 * self.padding <= self.k:
            raise ValueError(f"PoolParams needs 0 <= padding <= k / 2 (as torch's pools), got {self}")

    @property
    def grid(self) -> tuple[int, int]:
        return tuple((n + 2 * self.padding) // self.k for n in (self.height, self.width))


@dataclass(frozen=True)
class PatchConvParams(WindowParams):
    """FP32 conv with kernel = stride = ``k`` (no padding) on a (batch, channels, height, width) map, as a matmul of
    its (height/k) * (width/k) patches: ``k_dim`` = channels * k * k inputs, ``n`` outputs."""

    n: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ValueError(f"PatchConvParams needs at least one output, got {self}")

    @property
    def k_dim(self) -> int:
        return self.channels * self.k * self.k


@dataclass(frozen=True)
class StencilParams:
    """The stencil add on a (batch, channels, height, width) map: a circular cross stencil of ``reach``
    (``4 * reach + 1`` taps per channel) plus scaled token-major tokens and a bias."""

    batch: int
    channels: int
    height: int
    width: int
    reach: int

    def __post_init__(self) -> None:
        if min(self.batch, self.channels, self.height, self.width) < 1 or self.reach < 0:
            raise ValueError(f"StencilParams needs positive sizes and a reach >= 0, got {self}")

    @property
    def taps(self) -> int:
        return 4 * self.reach + 1  # models.layers.shift.stencil_taps (this module stays free of torch)
