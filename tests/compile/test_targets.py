"""Named targets and host CPU detection (no TVM needed)."""

from __future__ import annotations

import pytest
from bhvit.compile.targets import TargetError, resolve_target

ZEN4 = (
    "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma bmi2 movbe avx512f avx512dq avx512cd avx512bw "
    "avx512vl avx512_vpopcntdq\n"
)
ICELAKE = ZEN4.replace("AuthenticAMD", "GenuineIntel")
HASWELL = "vendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 fma bmi2 movbe\n"
OLD = "vendor_id\t: GenuineIntel\nflags\t\t: fpu sse2\n"


@pytest.mark.parametrize(
    "cpuinfo,mcpu,mattr",
    [
        (ZEN4, "znver4", []),
        (ICELAKE, "x86-64-v4", ["+avx512vpopcntdq"]),
        (HASWELL, "x86-64-v3", []),
        (OLD, "x86-64", []),
    ],
)
def test_host_picks_best_x86_variant_from_cpuinfo(tmp_path, monkeypatch, cpuinfo, mcpu, mattr):
    monkeypatch.setattr("bhvit.compile.targets.host_arch", lambda: "x86_64")
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    spec = resolve_target("host", threads=2, cpuinfo=path)
    assert spec.tvm == {"kind": "llvm", "mcpu": mcpu, **({"mattr": mattr} if mattr else {})}
    assert spec.detected == mcpu and spec.arch == "x86_64" and spec.threads == 2


def test_rpi5_is_cortex_a76_neon_with_four_threads():
    spec = resolve_target("rpi5", check_tools=False)
    assert spec.tvm == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"]}
    assert spec.threads == 4 and spec.arch == "aarch64" and spec.cross_cc == "aarch64-linux-gnu-gcc"
    assert resolve_target("rpi4", check_tools=False).mcpu == "cortex-a72"


def test_unknown_target_and_bad_threads_are_refused():
    with pytest.raises(TargetError, match="unknown target 'pi5'"):
        resolve_target("pi5")
    with pytest.raises(TargetError, match="threads"):
        resolve_target("host", threads=0)
