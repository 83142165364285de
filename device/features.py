"""CPU feature names: LLVM's spelling (what a compile target lets the code generator emit) in the kernel's spelling
(/proc/cpuinfo ``flags`` on x86-64, the aarch64 HWCAP names that /proc/cpuinfo ``Features`` prints).

``bhvit-compile`` asks LLVM which features the target's ``mcpu``/``mattr`` enable and records them in the kernel's
spelling; ``bhvit-device`` compares that list with this CPU before loading anything. Only what an instruction needs
is recorded: LLVM's tuning features (how to schedule, not which instructions exist), architecture-version umbrellas
(each of their instructions is a feature of its own) and privileged or OS-managed instructions (kernel-mode only,
or enabled per process, and often hidden by hypervisors; compiled code reaches them only through intrinsics the
kit never calls) map to nothing. Any other name is kept as it is, so an unknown feature is checked, not dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["kernel_features"]

_X86_RENAMED: dict[str, tuple[str, ...]] = {
    "64bit": ("lm",),
    "x87": ("fpu",),
    "sse3": ("pni",),
    "sse4.1": ("sse4_1",),
    "sse4.2": ("sse4_2",),
    "crc32": ("sse4_2",),  # the SSE4.2 CRC32 instruction
    "pclmul": ("pclmulqdq",),
    "bmi": ("bmi1",),
    "lzcnt": ("abm",),
    "sahf": ("lahf_lm",),
    "prfchw": ("3dnowprefetch",),
    "rdrnd": ("rdrand",),
    "sha": ("sha_ni",),
    "avx512vpopcntdq": ("avx512_vpopcntdq",),
    "avx512bitalg": ("avx512_bitalg",),
    "avx512vbmi2": ("avx512_vbmi2",),
    "avx512vnni": ("avx512_vnni",),
    "avx512bf16": ("avx512_bf16",),
    "avx512fp16": ("avx512_fp16",),
    "avx512vp2intersect": ("avx512_vp2intersect",),
}
_X86_UNCHECKED = frozenset(
    {
        # tuning
        "64bit-mode",
        "allow-light-256-bit",
        "branchfusion",
        "fsrm",
        "idivl-to-divb",
        "idivq-to-divl",
        "lea-sp",
        "lea-uses-ag",
        "macrofusion",
        "pad-short-functions",
        "sbb-dep-breaking",
        "vzeroupper",
        # privileged or OS-managed
        "invpcid",
        "mwaitx",
        "pku",
        "rdpru",
        "shstk",
        "wbnoinvd",
        "xsaves",
    }
)
_ARM_RENAMED: dict[str, tuple[str, ...]] = {
    "neon": ("asimd",),
    "fp-armv8": ("fp",),
    "dotprod": ("asimddp",),
    "fullfp16": ("fphp", "asimdhp"),
    "fp16fml": ("asimdfhm",),
    "crc": ("crc32",),
    "lse": ("atomics",),
    "rcpc": ("lrcpc",),
    "rdm": ("asimdrdm",),
    "aes": ("aes", "pmull"),
    "sha2": ("sha1", "sha2"),
    "sha3": ("sha3", "sha512"),
    "ccpp": ("dcpop",),
    "jsconv": ("jscvt",),
    "complxnum": ("fcma",),
}
_ARM_UNCHECKED = frozenset(
    {
        # tuning
        "a53",
        "a55",
        "a72",
        "a76",
        "addr-lsl-slow-14",
        "alu-lsl-fast",
        "enable-select-opt",
        "predictable-select-expensive",
        # privileged or OS-managed
        "contextidrel2",
        "el2vmsa",
        "el3",
        "lor",
        "pan",
        "pan-rwv",
        "perfmon",
        "ras",
        "ssbs",
        "uaops",
        "vh",
    }
)
_TUNING_PREFIXES = ("fast-", "slow-", "false-deps-", "fuse-", "prefer-", "tuning-")
_TABLES = {"x86_64": (_X86_RENAMED, _X86_UNCHECKED), "aarch64": (_ARM_RENAMED, _ARM_UNCHECKED)}


def _is_arch_version(name: str) -> bool:
    """``v8a``, ``v8.2a``, ``v9a``: aarch64 architecture-version umbrellas."""
    return name.startswith("v") and name[1:2].isdigit() and name.endswith("a")


def kernel_features(names: Iterable[str], arch: str) -> frozenset[str]:
    """The kernel's names for ``names`` (LLVM spelling, ``+``-prefixed or not; kernel spellings pass through)."""
    renamed, unchecked = _TABLES.get(arch, ({}, frozenset()))
    out: set[str] = set()
    for raw in names:
        name = raw.strip().lower().lstrip("+")
        if name in unchecked or name.startswith(_TUNING_PREFIXES) or (arch == "aarch64" and _is_arch_version(name)):
            continue
        out.update(renamed.get(name, (name,)))
    return frozenset(out)
