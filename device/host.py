"""Facts about the machine we run on: architecture, CPU features, model, governor, temperature, throttling.

Every probe returns ``None`` (or an empty value) where the fact is not available; none of them raises.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "MachineInfo",
    "cpu_features",
    "decode_hwcaps",
    "decode_throttled",
    "host_arch",
    "machine_info",
    "normalize_arch",
    "parse_cpuinfo_features",
]

_ARCH_ALIASES = {"arm64": "aarch64", "armv8": "aarch64", "amd64": "x86_64", "x64": "x86_64"}

# Linux arch/arm64/include/uapi/asm/hwcap.h: bit -> name as printed in /proc/cpuinfo "Features".
_HWCAP = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
    "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg"
).split()
_HWCAP2 = (
    "dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 "
    "i8mm bf16 dgh rng bti mte"
).split()
_AT_HWCAP, _AT_HWCAP2 = 16, 26

_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1"}

# `vcgencmd get_throttled` bits (Raspberry Pi documentation).
_THROTTLE_BITS = {
    0: "under-voltage",
    1: "arm-frequency-capped",
    2: "throttled",
    3: "soft-temperature-limit",
    16: "under-voltage-occurred",
    17: "arm-frequency-capping-occurred",
    18: "throttling-occurred",
    19: "soft-temperature-limit-occurred",
}


def normalize_arch(name: str) -> str:
    """Canonical architecture name (``aarch64``, ``x86_64``) for aliases such as ``arm64``/``AMD64``."""
    name = name.strip().lower()
    return _ARCH_ALIASES.get(name, name)


def host_arch() -> str:
    """This machine's architecture, normalised."""
    return normalize_arch(platform.machine())


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def parse_cpuinfo_features(text: str) -> frozenset[str]:
    """CPU feature names from /proc/cpuinfo text: the x86 ``flags`` or aarch64 ``Features`` line."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def decode_hwcaps(hwcap: int, hwcap2: int = 0) -> frozenset[str]:
    """aarch64 AT_HWCAP/AT_HWCAP2 bits as /proc/cpuinfo feature names."""
    return frozenset(
        name
        for bits, names in ((hwcap, _HWCAP), (hwcap2, _HWCAP2))
        for bit, name in enumerate(names)
        if bits >> bit & 1
    )


def _hwcap_features() -> frozenset[str]:
    """aarch64 features from getauxval(): right under qemu too, where /proc/cpuinfo shows the host CPU."""
    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return frozenset()
    getauxval.restype = ctypes.c_ulong
    getauxval.argtypes = [ctypes.c_ulong]
    return decode_hwcaps(getauxval(_AT_HWCAP), getauxval(_AT_HWCAP2))


@lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """Feature names of this CPU, spelled as in /proc/cpuinfo (``avx512vpopcntdq``, ``asimddp``, ...)."""
    if host_arch() == "aarch64":
        hwcaps = _hwcap_features()
        if hwcaps:
            return hwcaps
    return parse_cpuinfo_features(_read("/proc/cpuinfo") or "")


def _cpu_model() -> str:
    cpuinfo = _read("/proc/cpuinfo") or ""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    model = fields.get("model name") or _ARM_PARTS.get(fields.get("CPU part", ""), "") or platform.processor()
    board = (_read("/proc/device-tree/model") or "").strip("\x00\n ")
    return f"{board} ({model})" if board and model else board or model or "unknown"


def decode_throttled(value: int) -> list[str]:
    """Names of the bits set in a ``vcgencmd get_throttled`` value."""
    return [name for bit, name in _THROTTLE_BITS.items() if value >> bit & 1]


def _vcgencmd(*args: str) -> str | None:
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=2, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().partition("=")[2] or None


def _temperature_c() -> float | None:
    raw = _read("/sys/class/thermal/thermal_zone0/temp")
    try:
        return int(raw) / 1000 if raw else None
    except ValueError:
        return None


def _throttled() -> list[str] | None:
    raw = _vcgencmd("get_throttled")
    try:
        return decode_throttled(int(raw, 16)) if raw else None
    except ValueError:
        return None


@dataclass(frozen=True)
class MachineInfo:
    """What a benchmark result depends on."""

    arch: str
    cpu_model: str
    cores: int
    usable_cores: int
    governor: str | None
    cpu_mhz: float | None
    temperature_c: float | None
    throttled: list[str] | None
    is_raspberry_pi: bool

    def to_dict(self) -> dict:
        return asdict(self)


def machine_info() -> MachineInfo:
    """Probe the machine once (cheap: a few small /proc and /sys reads, at most one vcgencmd call)."""
    freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    model = _cpu_model()
    return MachineInfo(
        arch=host_arch(),
        cpu_model=model,
        cores=os.cpu_count() or 1,
        usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        governor=governor.strip() if governor else None,
        cpu_mhz=int(freq) / 1000 if freq and freq.strip().isdigit() else None,
        temperature_c=_temperature_c(),
        throttled=_throttled(),
        is_raspberry_pi=model.startswith("Raspberry Pi"),
    )
