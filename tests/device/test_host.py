"""Machine probes: cpuinfo parsing for both architectures, throttling flags, machine summary."""

from __future__ import annotations

from bhvit.device import host

X86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx512f avx512vpopcntdq\n"
PI5 = (
    "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU part\t: 0xd0b\n"
)


def test_cpuinfo_features_parse_x86_flags_and_arm_features():
    assert host.parse_cpuinfo_features(X86) == {"fpu", "sse4_2", "avx512f", "avx512vpopcntdq"}
    assert {"asimd", "asimddp"} <= host.parse_cpuinfo_features(PI5)
    assert "sve" not in host.parse_cpuinfo_features(PI5)


def test_hwcaps_decode_to_cortex_a76_features():
    # getauxval(AT_HWCAP) as read under qemu -cpu cortex-a76
    a76 = host.decode_hwcaps(0x119FFB)
    assert a76 == host.parse_cpuinfo_features(PI5) - {"evtstrm"}
    assert "sve" not in a76 and "i8mm" in host.decode_hwcaps(0, 1 << 13)


def test_throttled_bits_decode_to_names():
    assert host.decode_throttled(0) == []
    assert host.decode_throttled(0x50005) == [
        "under-voltage",
        "throttled",
        "under-voltage-occurred",
        "throttling-occurred",
    ]


def test_arch_aliases_normalize():
    assert host.normalize_arch("arm64") == "aarch64" and host.normalize_arch("AMD64") == "x86_64"


def test_machine_info_describes_this_machine():
    info = host.machine_info()
    assert info.arch == host.host_arch() and info.cores >= 1 and 1 <= info.usable_cores <= info.cores
    assert info.cpu_model and info.is_raspberry_pi == info.cpu_model.startswith("Raspberry Pi")
    assert set(info.to_dict()) >= {"governor", "temperature_c", "throttled"}


def test_cpu_features_of_this_machine_are_known():
    assert host.cpu_features(), "no CPU features found in /proc/cpuinfo or the aux vector"
