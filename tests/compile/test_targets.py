"""Named targets, host CPU detection and the CPU features each target records (asked from TVM's LLVM)."""

from __future__ import annotations

import pytest
from bhvit.compile.targets import TargetError, resolve_target
from bhvit.device.host import decode_hwcaps, parse_cpuinfo_features

pytestmark = pytest.mark.tvm
pytest.importorskip("tvm", reason="a target's CPU features come from TVM's LLVM")

# Real /proc/cpuinfo flag lines: a Zen 4 EPYC under KVM (which hides pku, mwaitx, rdpru, wbnoinvd), an Ice Lake
# Xeon, a Haswell Core i7 and a Core 2 Duo.
ZEN4_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx "
    "mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid "
    "tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave "
    "avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext "
    "vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma "
    "clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr "
    "arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm"
)
ICELAKE_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht "
    "tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc "
    "cpuid aperfmperf pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca "
    "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch "
    "cpuid_fault epb cat_l3 invpcid_single intel_ppin ssbd mba ibrs ibpb stibp ibrs_enhanced fsgsbase tsc_adjust bmi1 "
    "avx2 smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb intel_pt "
    "avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves wbnoinvd dtherm ida arat pln pts avx512vbmi "
    "umip pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq la57 rdpid fsrm "
    "md_clear pconfig flush_l1d arch_capabilities"
)
HASWELL_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht "
    "tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid "
    "aperfmperf pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid sse4_1 sse4_2 "
    "x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm cpuid_fault epb invpcid_single pti "
    "ssbd ibrs ibpb stibp tpr_shadow vnmi flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms "
    "invpcid xsaveopt dtherm ida arat pln pts md_clear flush_l1d"
)
CORE2_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht "
    "tm pbe syscall nx lm constant_tsc arch_perfmon pebs bts rep_good nopl cpuid aperfmperf pni dtes64 monitor ds_cpl "
    "vmx est tm2 ssse3 cx16 xtpr pdcm sse4_1 lahf_lm"
)
# /proc/cpuinfo "Features" of a Raspberry Pi 5 (BCM2712, Cortex-A76) and a Pi 4 (BCM2711, Cortex-A72, no crypto).
PI5_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
PI4_FEATURES = "fp asimd evtstrm crc32 cpuid"
QEMU_A76_HWCAP = 0x119FFB  # getauxval(AT_HWCAP) under qemu-aarch64 -cpu cortex-a76


def _cpuinfo(tmp_path, flags: str, vendor: str = "GenuineIntel"):
    path = tmp_path / "cpuinfo"
    path.write_text(f"vendor_id\t: {vendor}\nflags\t\t: {flags}\n")
    return path


@pytest.mark.parametrize(
    "flags, vendor, mcpu, mattr",
    [
        (ZEN4_FLAGS, "AuthenticAMD", "znver4", []),
        (ICELAKE_FLAGS, "GenuineIntel", "x86-64-v4", ["+avx512vpopcntdq"]),
        (HASWELL_FLAGS, "GenuineIntel", "x86-64-v3", []),
        (CORE2_FLAGS, "GenuineIntel", "x86-64", []),
    ],
)
def test_host_picks_best_x86_variant_from_cpuinfo(tmp_path, monkeypatch, flags, vendor, mcpu, mattr):
    monkeypatch.setattr("bhvit.compile.targets.host_arch", lambda: "x86_64")
    spec = resolve_target("host", threads=2, cpuinfo=_cpuinfo(tmp_path, flags, vendor))
    assert spec.tvm == {"kind": "llvm", "mcpu": mcpu, **({"mattr": mattr} if mattr else {})}
    assert spec.detected == mcpu and spec.arch == "x86_64" and spec.threads == 2
    assert set(spec.cpu_features) <= set(flags.split())


def test_a_cpu_lacking_one_znver4_feature_is_not_given_znver4_code(tmp_path, monkeypatch):
    # the 8 flags the hand list used to check are all there; AVX-512 BF16 is not
    monkeypatch.setattr("bhvit.compile.targets.host_arch", lambda: "x86_64")
    flags = ZEN4_FLAGS.replace(" avx512_bf16", "")
    spec = resolve_target("host", cpuinfo=_cpuinfo(tmp_path, flags, "AuthenticAMD"))
    assert (spec.mcpu, spec.mattr) == ("x86-64-v4", ("+avx512vpopcntdq",))
    assert "avx512_bf16" in resolve_target("znver4").cpu_features


def test_recorded_features_cover_what_the_cpu_lets_llvm_emit():
    v3 = set(resolve_target("x86-64-v3").cpu_features)
    assert {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave", "popcnt", "sse4_2"} <= v3
    znver4 = set(resolve_target("znver4").cpu_features)
    assert v3 < znver4 and {"avx512_vpopcntdq", "avx512vbmi", "avx512_bitalg", "gfni", "sse4a"} <= znver4
    assert not {f for f in znver4 if f.startswith(("fast-", "slow-"))} and "pku" not in znver4


def test_pi_targets_need_what_the_pi_and_qemu_have():
    rpi5 = set(resolve_target("rpi5", check_tools=False).cpu_features)
    rpi4 = set(resolve_target("rpi4", check_tools=False).cpu_features)
    assert {"asimd", "asimddp", "fphp", "atomics"} <= rpi5 <= set(PI5_FEATURES.split())
    assert rpi5 <= decode_hwcaps(QEMU_A76_HWCAP)
    assert rpi4 == {"fp", "asimd", "crc32"} <= parse_cpuinfo_features(f"Features\t: {PI4_FEATURES}\n")


def test_runs_here_needs_every_recorded_feature(monkeypatch):
    spec = resolve_target("x86-64-v3")
    monkeypatch.setattr("bhvit.compile.targets.host_arch", lambda: "x86_64")
    monkeypatch.setattr("bhvit.compile.targets.cpu_features", lambda: frozenset(spec.cpu_features))
    assert spec.runs_here
    monkeypatch.setattr("bhvit.compile.targets.cpu_features", lambda: frozenset(spec.cpu_features) - {"f16c"})
    assert not spec.runs_here


def test_rpi5_is_cortex_a76_neon_with_four_threads():
    spec = resolve_target("rpi5", check_tools=False)
    assert spec.tvm == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]}
    assert spec.threads == 4 and spec.arch == "aarch64" and spec.cross_cc == "aarch64-linux-gnu-gcc"
    rpi4 = resolve_target("rpi4", check_tools=False)
    assert rpi4.mcpu == "cortex-a72" and rpi4.mattr == ("+neon", "-aes", "-sha2")


def test_unknown_target_and_bad_threads_are_refused():
    with pytest.raises(TargetError, match="unknown target 'pi5'"):
        resolve_target("pi5")
    with pytest.raises(TargetError, match="threads"):
        resolve_target("host", threads=0)
