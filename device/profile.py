"""Per-operator profile of a TVM artifact, from the artifact itself (runtime only: no ``tvm`` package, no torch).

The Relax VM of the exported library calls an *instrument* before and after every packed-function call of ``main``
(``set_instrument``): each compiled kernel, fused FP function and VM builtin (``vm.builtin.alloc_tensor``, ...).
One instrumented run records those calls with their arguments; making them again in order, one at a time, gives
per compiled function its calls and milliseconds per run (timing inside the instrument would add its own Python
callback, 1-4 µs per call, to every call it times). The compiler records in ``metadata.json`` what each function
computes and its binary multiply-accumulates per call (``kernels``), which gives the achieved bit-MAC/s of the
binary kernels and their fraction of the CPU's popcount ceiling (:func:`popcount_ceiling`). Shares are of the
end-to-end latency of the model's own runs; what the calls do not cover (the VM's dispatch between calls, the
input and output copies) is the ``outside calls`` row.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .host import cpu_features, machine_info
from .runtime import tvm_ffi_with_runtime

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
    end_to_end_ms: float  # fastest run of the model
    runs: int
    threads: int
    ceiling_bit_macs_per_s: float | None  # None: unknown for this CPU
    ceiling_basis: str
    call_cost: str  # how the cost of calling each function from Python was taken out of its time
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


@dataclass
class _Call:
    name: str
    func: Any
    args: tuple


class _Recorder:
    """The instrument: every packed-function call of ``main`` in the order the VM makes them."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []

    def __call__(self, func: Any, name: str, before_run: bool, ret_value: Any, *args: Any) -> int:
        if before_run:
            self.calls.append(_Call(str(name), func, args))
        return _INSTRUMENT_CONTINUE


class _Replay:
    """Times the recorded calls by making them again, in order, from Python, each the fastest of the rounds.

    A call from Python also converts its arguments (and its result, for builtins that return an object), 0.2-0.5 µs.
    ``tvm_ffi``'s ``testing.nop`` and ``testing.echo`` are called with the same arguments and result right after,
    and that cost is subtracted call by call; without them (a ``tvm_ffi`` built without its testing library)
    nothing is subtracted, which :attr:`call_cost` says."""

    def __init__(self, calls: list[_Call]) -> None:
        self.calls = calls
        self.best = np.full(len(calls), np.inf)
        self.overhead = np.full((len(calls), 3), np.inf)  # nop(*args), echo(result), nop(result)
        ffi = tvm_ffi_with_runtime()
        self._nop = ffi.get_global_func("testing.nop", allow_missing=True)
        self._echo = ffi.get_global_func("testing.echo", allow_missing=True)

    @property
    def calibrated(self) -> bool:
        return self._nop is not None and self._echo is not None

    @property
    def call_cost(self) -> str:
        if self.calibrated:
            return "subtracted: the same call of tvm_ffi's testing.nop/echo, fastest of the rounds"
        return "not subtracted (tvm_ffi has no testing.nop here): each call's row includes 0.2-0.5 µs of calling"

    def reset(self) -> None:
        """Forget the rounds so far."""
        self.best[:] = np.inf
        self.overhead[:] = np.inf

    def round(self) -> None:
        clock, nop, echo, calibrated = time.perf_counter, self._nop, self._echo, self.calibrated
        for i, call in enumerate(self.calls):
            t0 = clock()
            result = call.func(*call.args)
            t1 = clock()
            self.best[i] = min(self.best[i], t1 - t0)
            if calibrated:
                t1 = clock()
                nop(*call.args)
                t2 = clock()
                costs = [t2 - t1, 0.0, 0.0]
                if result is not None:
                    echo(result)
                    t3 = clock()
                    nop(result)
                    costs[1:] = [t3 - t2, clock() - t3]
                self.overhead[i] = np.minimum(self.overhead[i], costs)
            del result  # released here, not inside the next call's timing (the VM releases results between calls)

    def per_run(self) -> tuple[dict[str, float], dict[str, int]]:
        """Seconds and calls per function in one run: each call's fastest over the rounds, less its calling cost."""
        cost = np.zeros(len(self.calls))
        if self.calibrated:
            nop_args, echo_result, nop_result = self.overhead.T
            cost = nop_args + np.maximum(0.0, echo_result - nop_result)
        seconds: dict[str, float] = defaultdict(float)
        calls: dict[str, int] = defaultdict(int)
        for call, best, own in zip(self.calls, self.best, cost, strict=True):
            seconds[call.name] += max(0.0, best - own)
            calls[call.name] += 1
        return seconds, calls


def profile_model(model: Any, x: np.ndarray, kernels: dict[str, dict], runs: int = 20, warmup: int = 3) -> Profile:
    """Profile a loaded TVM model (:class:`~bhvit.device.runtime.TvmModel`) on input ``x``.

    One run with the VM's instrument records every call ``main`` makes (function and arguments); the calls are
    then made again in the same order from Python and timed one by one (:class:`_Replay`). Runs of the model and
    rounds of the replay alternate, so that both see the same states of the machine (a CPU whose clock or
    neighbours change for seconds at a time would otherwise make one side up to 40% slower than the other). Both
    are fastest-of estimates of the undisturbed time: a machine busy with other work delays whole runs far more
    often than single calls, so medians of the two would drift apart there. With several threads on a machine that
    has no core to spare, even the fastest run waits for a preempted worker: profile such a machine with one
    thread.
    """
    for _ in range(warmup):
        model(x)
    recorder = _Recorder()
    model.set_instrument(recorder)
    try:
        model(x)
    finally:
        model.set_instrument(None)
    replay = _Replay(recorder.calls)
    for _ in range(warmup):  # the first calls from Python pay one-time costs (argument conversion paths, pools)
        replay.round()
    replay.reset()
    plain = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        plain.append(time.perf_counter() - t0)
        replay.round()
    end_to_end = min(plain) * 1e3
    ceiling, basis = popcount_ceiling(model.threads)
    rows = _rows(*replay.per_run(), kernels, end_to_end, ceiling)
    outside = end_to_end - sum(r.ms for r in rows)
    rows.append(ProfileRow(OUTSIDE, "VM dispatch, Python call, input/output copies", 0, outside, outside / end_to_end))
    return Profile(end_to_end, runs, model.threads, ceiling, basis, replay.call_cost, rows)


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
            f"inside calls {profile.attributed_ms:.3f} ms = {profile.attributed_ms / total:.1%} "
            f"(calls replayed one by one; calling cost {profile.call_cost})",
            f"binary work {bit_macs / 1e9:.2f} Gbit-MAC per run = {bit_macs / (total / 1e3) / 1e9:.0f} Gbit-MAC/s "
            f"end to end; ceiling {ceiling}",
        ]
    )
