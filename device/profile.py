"""Per-operator profile of a TVM artifact, from the artifact itself (runtime only: no ``tvm`` package, no torch).

The Relax VM of the exported library calls an *instrument* before and after every packed-function call of ``main``
(``set_instrument``): each compiled kernel, fused FP function and VM builtin (``vm.builtin.alloc_tensor``, ...).
Timing those calls over several runs gives, per compiled function, its calls and milliseconds per run. The
compiler records in ``metadata.json`` what each function computes and its binary multiply-accumulates per call
(``kernels``), which gives the achieved bit-MAC/s of the binary kernels and their fraction of the CPU's
popcount ceiling (:func:`popcount_ceiling`). Shares are of the end-to-end latency measured without the
instrument; what the calls do not cover (the VM's dispatch between calls, the input and output copies) is the
``outside calls`` row.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .host import cpu_features, machine_info

__all__ = ["ProfileRow", "Profile", "popcount_ceiling", "profile_model", "format_profile"]

BUILTIN_PREFIX = "vm.builtin."
OUTSIDE = "outside calls"  # row name: VM dispatch, Python call and the input/output copies
_INSTRUMENT_CONTINUE = 0  # VMInstrumentReturnKind::kNoOp

# Binary multiply-accumulates per cycle and core at the popcount ceiling, by CPU feature / part:
# x86 with AVX-512 VPOPCNTDQ retires one 512-bit vpopcntq per cycle; the Cortex-A76 needs 3 NEON uops
# (eor, cnt, uadalp) per 128 bits on its 2 SIMD pipes: 128 * 2 / 3.
_PER_CYCLE_BY_FEATURE = {"avx512_vpopcntdq": 512.0, "avx512vpopcntdq": 512.0}
_PER_CYCLE_BY_PART = {"Cortex-A76": 256 / 3}


@dataclass
class ProfileRow:
    """One compiled function (or the VM builtins, or the time outside calls) per run."""

    name: str
    op: str
    calls: int
    ms: float
    share: float  # of the end-to-end latency
    bit_macs: int = 0  # per run
    bit_macs_per_s: float | None = None
    ceiling_fraction: float | None = None


@dataclass
class Profile:
    end_to_end_ms: float  # fastest run without the instrument
    runs: int
    threads: int
    ceiling_bit_macs_per_s: float | None  # None: unknown for this CPU
    ceiling_basis: str
    rows: list[ProfileRow] = field(default_factory=list)

    @property
    def attributed_ms(self) -> float:
        """Milliseconds per run spent inside calls (every row but the outside-calls row)."""
        return sum(r.ms for r in self.rows if r.name != OUTSIDE)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "attributed_ms": self.attributed_ms}


def popcount_ceiling(threads: int) -> tuple[float | None, str]:
    """Binary multiply-accumulates per second at the popcount ceiling of ``threads`` cores of this CPU, and how it
    was derived (``None`` and the reason when its SIMD popcount width or its clock is unknown)."""
    features, model = cpu_features(), machine_info().cpu_model
    per_cycle = next((v for k, v in _PER_CYCLE_BY_FEATURE.items() if k in features), None)
    per_cycle = per_cycle or next((v for k, v in _PER_CYCLE_BY_PART.items() if k in model), None)
    ghz = _max_clock_ghz()
    if per_cycle is None:
        return None, f"unknown: no popcount ceiling known for {model}"
    if ghz is None:
        return None, "unknown: the CPU clock is not readable"
    return per_cycle * ghz * 1e9 * threads, f"{per_cycle:.0f} bit-MACs/cycle x {ghz:.2f} GHz x {threads} cores"


def _max_clock_ghz() -> float | None:
    """The CPU's maximum clock: cpufreq's ``cpuinfo_max_freq``, else the x86 ``cpu MHz`` of /proc/cpuinfo."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read()) / 1e6
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.lower().startswith("cpu mhz")]
    except (OSError, ValueError):
        return None
    return max(mhz) / 1e3 if mhz else None


class _Recorder:
    """The instrument: the (name, argument count, seconds) of every call, one list per run."""

    def __init__(self) -> None:
        self.runs: list[list[tuple[str, int, float]]] = []
        self._start = 0.0

    def next_run(self) -> None:
        self.runs.append([])

    def __call__(self, func: Any, name: str, before_run: bool, ret_value: Any, *args: Any) -> int:
        now = time.perf_counter()
        if before_run:
            self._start = now
        elif self.runs:
            self.runs[-1].append((str(name), len(args), now - self._start))
        return _INSTRUMENT_CONTINUE

    def per_run(self) -> tuple[dict[str, float], dict[str, int]]:
        """Seconds and calls per function in one run: each call site's fastest over the runs, minus the
        instrument's own cost for a call with that many arguments (:meth:`own_cost`)."""
        sequence = [(name, n) for name, n, _ in self.runs[0]]
        if any([(name, n) for name, n, _ in run] != sequence for run in self.runs):
            raise RuntimeError("the VM called different functions in different runs")
        own = self.own_cost()
        seconds: dict[str, float] = defaultdict(float)
        calls: dict[str, int] = defaultdict(int)
        for i, (name, n) in enumerate(sequence):
            seconds[name] += max(0.0, min(run[i][2] for run in self.runs) - own(n))
            calls[name] += 1
        return seconds, calls

    def own_cost(self) -> Callable[[int], float]:
        """Seconds the instrument adds inside a call with ``n`` arguments (wrapping each for Python): a line through
        the fastest VM-builtin call of each argument count. The builtins' own work (bookkeeping of well under a
        microsecond) cannot be told apart from it, so their row shows only what exceeds it."""
        durations: dict[int, list[float]] = defaultdict(list)
        for run in self.runs:
            for name, n, s in run:
                if name.startswith(BUILTIN_PREFIX):
                    durations[n].append(s)
        typical = {n: min(d) for n, d in durations.items()}
        floor = min((s for run in self.runs for *_, s in run), default=0.0)
        if len(typical) < 2:
            return lambda n: max([floor, *typical.values()])
        slope, intercept = np.polyfit(list(typical), list(typical.values()), 1)
        return lambda n: max(floor, intercept + max(0.0, slope) * n)


def _fastest_ms(run: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times)


def profile_model(model: Any, x: np.ndarray, kernels: dict[str, dict], runs: int = 20, warmup: int = 3) -> Profile:
    """Profile a loaded TVM model (:class:`~bhvit.device.runtime.TvmModel`) on input ``x``.

    Both sides are fastest-of-runs estimates of the undisturbed time: the end-to-end latency is the fastest run
    without the instrument (half of them before and half after the instrumented runs), each call's time the
    fastest of its runs. A machine busy with other work delays whole runs far more often than single calls, so
    medians of the two would drift apart there. With several threads on a machine that has no core to spare,
    even the fastest run waits for a preempted worker: profile such a machine with one thread.
    """
    for _ in range(warmup):
        model(x)
    half = max(1, runs // 2)
    before = _fastest_ms(lambda: model(x), half)
    recorder = _Recorder()
    model.set_instrument(recorder)
    try:
        for _ in range(warmup):  # the first instrumented run pays a one-time cost
            model(x)
        for _ in range(runs):
            recorder.next_run()
            model(x)
    finally:
        model.set_instrument(None)
    end_to_end = min(before, _fastest_ms(lambda: model(x), half))
    ceiling, basis = popcount_ceiling(model.threads)
    rows = _rows(*recorder.per_run(), kernels, end_to_end, ceiling)
    outside = end_to_end - sum(r.ms for r in rows)
    rows.append(ProfileRow(OUTSIDE, "VM dispatch, Python call, input/output copies", 0, outside, outside / end_to_end))
    return Profile(end_to_end, runs, model.threads, ceiling, basis, rows)


def _rows(
    seconds: dict[str, float], calls: dict[str, int], kernels: dict[str, dict], end_to_end: float, ceiling: float | None
) -> list[ProfileRow]:
    rows: list[ProfileRow] = []
    builtins = ProfileRow("vm.builtin.*", "VM builtins (allocation, reshape, ...)", 0, 0.0, 0.0)
    for name, sec in seconds.items():
        ms, n = sec * 1e3, calls[name]
        if name.startswith(BUILTIN_PREFIX):
            builtins.calls += n
            builtins.ms += ms
            continue
        info = kernels.get(name, {})
        bit_macs = int(info.get("bit_macs", 0)) * n
        row = ProfileRow(name, info.get("op", "?"), n, ms, ms / end_to_end, bit_macs)
        if bit_macs and ms > 0:
            row.bit_macs_per_s = bit_macs / (ms / 1e3)
            row.ceiling_fraction = None if ceiling is None else row.bit_macs_per_s / ceiling
        rows.append(row)
    rows.sort(key=lambda r: -r.ms)
    if builtins.calls:
        builtins.share = builtins.ms / end_to_end
        rows.append(builtins)
    return rows


def format_profile(profile: Profile, top: int | None = None, name_width: int = 48) -> str:
    """A fixed-width table: one line per function (the ``top`` slowest, the rest summed), then the totals."""
    head = f"{'ms':>8} {'share':>6} {'calls':>5} {'Gbit-MAC/s':>10} {'ceil':>5}  {'function':<{name_width}} op"
    rows = [r for r in profile.rows if r.name != OUTSIDE]
    outside = [r for r in profile.rows if r.name == OUTSIDE]
    if top is not None and len(rows) > top + 1:
        rest = rows[top:]
        rows = rows[:top] + [
            ProfileRow(
                f"({len(rest)} more)",
                "",
                sum(r.calls for r in rest),
                sum(r.ms for r in rest),
                sum(r.share for r in rest),
            )
        ]

    def line(r: ProfileRow) -> str:
        rate = "" if r.bit_macs_per_s is None else f"{r.bit_macs_per_s / 1e9:.0f}"
        frac = "" if r.ceiling_fraction is None else f"{r.ceiling_fraction:.0%}"
        name = r.name if len(r.name) <= name_width else r.name[: name_width - 3] + "..."
        return f"{r.ms:8.3f} {r.share:6.1%} {r.calls:5d} {rate:>10} {frac:>5}  {name:<{name_width}} {r.op}"

    bit_macs = sum(r.bit_macs for r in profile.rows)
    total = profile.end_to_end_ms
    ceiling = (
        f"{profile.ceiling_bit_macs_per_s / 1e9:.0f} Gbit-MAC/s ({profile.ceiling_basis})"
        if profile.ceiling_bit_macs_per_s
        else profile.ceiling_basis
    )
    return "\n".join(
        [
            head,
            *(line(r) for r in rows + outside),
            f"end to end {total:.3f} ms (fastest run, {profile.threads} threads); "
            f"inside calls {profile.attributed_ms:.3f} ms = {profile.attributed_ms / total:.1%}",
            f"binary work {bit_macs / 1e9:.2f} Gbit-MAC per run = {bit_macs / (total / 1e3) / 1e9:.0f} Gbit-MAC/s "
            f"end to end; ceiling {ceiling}",
        ]
    )
