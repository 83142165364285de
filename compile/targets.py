"""Named compile targets (``rpi5``, ``rpi4``, ``host`` and the x86 variants) as TVM target dicts.

LLVM's ``mcpu=native`` does not enable AVX-512 code on Zen 4 under TVM 0.27, so ``host`` reads the CPU flags from
``/proc/cpuinfo`` and picks the best named x86 variant this CPU can run. A target's :attr:`TargetSpec.cpu_features`
are every feature LLVM may use for its ``mcpu``/``mattr`` (asked from TVM's bundled LLVM), in the kernel's spelling
(:mod:`bhvit.device.features`); ``bhvit-device`` checks them before loading an artifact.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bhvit.device.features import kernel_features
from bhvit.device.host import cpu_features, host_arch, parse_cpuinfo_features

__all__ = ["TargetSpec", "TargetError", "TARGET_NAMES", "llvm_features", "resolve_target"]


class TargetError(ValueError):
    """An unknown target or a missing tool for it; the message says how to fix it."""


@cache
def llvm_features(mcpu: str, mtriple: str | None = None, mattr: tuple[str, ...] = ()) -> frozenset[str]:
    """Every feature LLVM enables for this CPU and ``mattr``, in LLVM's spelling (imports TVM)."""
    import tvm
    from tvm.target import codegen

    target = {"kind": "llvm", "mcpu": mcpu} | ({"mtriple": mtriple} if mtriple else {})
    target |= {"mattr": list(mattr)} if mattr else {}
    return frozenset(codegen.llvm_get_cpu_features(tvm.target.Target(target)))


@dataclass(frozen=True)
class TargetSpec:
    """One compile target: its TVM target dict (:attr:`tvm`), the CPU it needs and how to link for it."""

    name: str
    mcpu: str
    arch: str  # "x86_64" or "aarch64"
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

    @property
    def cpu_features(self) -> tuple[str, ...]:
        """The features the generated code may use, sorted, as /proc/cpuinfo (x86) or HWCAP (aarch64) names."""
        return tuple(sorted(kernel_features(llvm_features(self.mcpu, self.mtriple, self.mattr), self.arch)))

    def tvm_target(self):
        """The :class:`tvm.target.Target` with ``num-cores`` (imports TVM)."""
        import tvm

        return tvm.target.Target({**self.tvm, "num-cores": self.threads})

    @property
    def runs_here(self) -> bool:
        """True when this machine can load and run code built for the target."""
        return self.arch == host_arch() and set(self.cpu_features) <= cpu_features()


_X86_LEVELS = ("znver4", "x86-64-v4", "x86-64-v3", "x86-64")
# Ice Lake and later Intel CPUs have VPOPCNTDQ without being znver4: x86-64-v4 asks for it when the CPU has it.
_X86_CANDIDATES = (
    ("znver4", ()),
    ("x86-64-v4", ("+avx512vpopcntdq",)),
    ("x86-64-v4", ()),
    ("x86-64-v3", ()),
    ("x86-64", ()),
)
# The Pi 4's BCM2711 has no crypto extensions (its cpuinfo lists no aes/sha), unlike LLVM's default Cortex-A72.
_PI = {
    "rpi5": ("cortex-a76", ("+neon",)),
    "rpi4": ("cortex-a72", ("+neon", "-aes", "-sha2")),
}
TARGET_NAMES = ("host", *_PI, *_X86_LEVELS)


def _default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _detect_x86(text: str) -> tuple[str, tuple[str, ...]]:
    """Best x86 variant whose every LLVM feature /proc/cpuinfo ``text`` lists: ``(mcpu, mattr)``."""
    flags = parse_cpuinfo_features(text)
    for mcpu, mattr in _X86_CANDIDATES[:-1]:
        if kernel_features(llvm_features(mcpu, None, mattr), "x86_64") <= flags:
            return mcpu, mattr
    return _X86_CANDIDATES[-1]  # the x86-64 baseline runs on every x86-64 CPU


def resolve_target(
    name: str, threads: int | None = None, cpuinfo: str | Path = "/proc/cpuinfo", check_tools: bool = True
) -> TargetSpec:
    """The :class:`TargetSpec` for ``name``; ``threads`` defaults to the Pi's 4 cores or this machine's cores."""
    if threads is not None and threads < 1:
        raise TargetError(f"threads must be at least 1, got {threads}")
    if name in _PI:
        mcpu, mattr = _PI[name]
        spec = TargetSpec(
            name,
            mcpu,
            "aarch64",
            threads or 4,
            mtriple="aarch64-linux-gnu",
            mattr=mattr,
            cross_cc="aarch64-linux-gnu-gcc",
        )
    elif name in _X86_LEVELS:
        spec = TargetSpec(name, name, "x86_64", threads or _default_threads())
    elif name == "host":
        if host_arch() != "x86_64":
            raise TargetError(f"target 'host' is detected on x86-64 only (this is {host_arch()}); name a target")
        level, mattr = _detect_x86(Path(cpuinfo).read_text(errors="replace"))
        spec = TargetSpec("host", level, "x86_64", threads or _default_threads(), mattr=mattr, detected=level)
    else:
        raise TargetError(f"unknown target {name!r}; choose one of: {', '.join(TARGET_NAMES)}")
    if check_tools and spec.cross_cc and spec.arch != host_arch() and shutil.which(spec.cross_cc) is None:
        raise TargetError(
            f"cross compiler {spec.cross_cc} not found (needed for target {name}); install it with "
            f"`apt-get install gcc-aarch64-linux-gnu`"
        )
    return spec
