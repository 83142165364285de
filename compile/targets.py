"""Named compile targets (``rpi5``, ``rpi4``, ``host`` and the x86 variants) as TVM target dicts.

LLVM's ``mcpu=native`` does not enable AVX-512 code on this kind of machine (Zen 4), so ``host`` reads the
CPU flags from ``/proc/cpuinfo`` and picks the best named x86 variant itself. ``cpu_features`` use the
``/proc/cpuinfo`` spelling, which is what ``bhvit-device`` checks before loading an artifact.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bhvit.device.host import cpu_features, host_arch, parse_cpuinfo_features

__all__ = ["TargetSpec", "TargetError", "TARGET_NAMES", "resolve_target"]


class TargetError(ValueError):
    """An unknown target or a missing tool for it; the message says how to fix it."""


@dataclass(frozen=True)
class TargetSpec:
    """One compile target: its TVM target dict (:attr:`tvm`), the CPU it needs and how to link for it."""

    name: str
    mcpu: str
    arch: str  # "x86_64" or "aarch64"
    cpu_features: tuple[str, ...]
    threads: int
    mtriple: str | None = None
    mattr: tuple[str, ...] = ()
    cross_cc: str | None = None  # linker for export_library when the target is not this machine's arch
    detected: str | None = None  # for "host": the named variant it resolved to

    @property
    def tvm(self) -> dict:
        d: dict = {"kind": "llvm", "mcpu": self.mcpu}
        if self.mtriple:
            d["mtriple"] = self.mtriple
        if self.mattr:
            d["mattr"] = list(self.mattr)
        return d

    def tvm_target(self):
        """The :class:`tvm.target.Target` with ``num-cores`` (imports TVM)."""
        import tvm

        return tvm.target.Target({**self.tvm, "num-cores": self.threads})

    @property
    def runs_here(self) -> bool:
        """True when this machine can load and run code built for the target."""
        return self.arch == host_arch() and set(self.cpu_features) <= cpu_features()


# x86 variants, best first: (mcpu, /proc/cpuinfo flags it needs).
_X86_LEVELS: dict[str, tuple[str, ...]] = {
    "znver4": ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vpopcntdq", "avx2", "fma"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx2", "fma"),
    "x86-64-v3": ("avx2", "fma", "bmi2", "movbe"),
    "x86-64": (),
}
_PI = {"rpi5": ("cortex-a76", ("asimd", "asimddp")), "rpi4": ("cortex-a72", ("asimd",))}
TARGET_NAMES = ("host", *_PI, *_X86_LEVELS)


def _default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _detect_x86(text: str) -> tuple[str, tuple[str, ...]]:
    """Best x86 variant for /proc/cpuinfo ``text``: ``(mcpu, extra mattr)``."""
    flags = parse_cpuinfo_features(text)
    amd = "AuthenticAMD" in text
    for level, needed in _X86_LEVELS.items():
        if set(needed) <= flags and (level != "znver4" or amd):
            # Intel Ice Lake and later have VPOPCNTDQ without being znver4: ask for it explicitly.
            extra = ("+avx512vpopcntdq",) if level == "x86-64-v4" and "avx512_vpopcntdq" in flags else ()
            return level, extra
    raise AssertionError("the x86-64 baseline always matches")


def resolve_target(
    name: str, threads: int | None = None, cpuinfo: str | Path = "/proc/cpuinfo", check_tools: bool = True
) -> TargetSpec:
    """The :class:`TargetSpec` for ``name``; ``threads`` defaults to the Pi's 4 cores or this machine's cores."""
    if threads is not None and threads < 1:
        raise TargetError(f"threads must be at least 1, got {threads}")
    if name in _PI:
        mcpu, feats = _PI[name]
        spec = TargetSpec(
            name,
            mcpu,
            "aarch64",
            feats,
            threads or 4,
            mtriple="aarch64-linux-gnu",
            mattr=("+neon",),
            cross_cc="aarch64-linux-gnu-gcc",
        )
    elif name in _X86_LEVELS:
        spec = TargetSpec(name, name, "x86_64", _X86_LEVELS[name], threads or _default_threads())
    elif name == "host":
        if host_arch() != "x86_64":
            raise TargetError(f"target 'host' is detected on x86-64 only (this is {host_arch()}); name a target")
        level, mattr = _detect_x86(Path(cpuinfo).read_text(errors="replace"))
        feats = _X86_LEVELS[level] + (("avx512_vpopcntdq",) if mattr else ())
        spec = TargetSpec("host", level, "x86_64", feats, threads or _default_threads(), mattr=mattr, detected=level)
    else:
        raise TargetError(f"unknown target {name!r}; choose one of: {', '.join(TARGET_NAMES)}")
    if check_tools and spec.cross_cc and spec.arch != host_arch() and shutil.which(spec.cross_cc) is None:
        raise TargetError(
            f"cross compiler {spec.cross_cc} not found (needed for target {name}); install it with "
            f"`apt-get install gcc-aarch64-linux-gnu`"
        )
    return spec
