"""CPU feature names: LLVM's spelling to the kernel's, per architecture; tuning and system features are not checked."""

from __future__ import annotations

import pytest
from bhvit.device.features import kernel_features


@pytest.mark.parametrize(
    "arch, llvm, kernel",
    [
        (
            "x86_64",
            "+avx512vpopcntdq sse4.1 bmi lzcnt 64bit x87 sahf sha crc32 avx2 xsave",
            "avx512_vpopcntdq sse4_1 bmi1 abm lm fpu lahf_lm sha_ni sse4_2 avx2 xsave",
        ),
        (
            "aarch64",
            "+neon dotprod fullfp16 aes sha2 lse rcpc rdm crc fp-armv8 ccpp",
            "asimd asimddp fphp asimdhp aes pmull sha1 sha2 atomics lrcpc asimdrdm crc32 fp dcpop",
        ),
    ],
)
def test_llvm_names_become_the_kernels_names(arch, llvm, kernel):
    assert kernel_features(llvm.split(), arch) == set(kernel.split())


def test_tuning_version_and_system_features_are_not_checked():
    x86 = ["fast-gather", "slow-3ops-lea", "false-deps-popcnt", "macrofusion", "64bit-mode", "xsaves", "pku"]
    arm = ["a76", "fuse-aes", "v8.2a", "v9a", "el3", "ssbs", "CONTEXTIDREL2", "predictable-select-expensive"]
    assert kernel_features(x86, "x86_64") == set() and kernel_features(arm, "aarch64") == set()


def test_names_depend_on_the_architecture_and_unknown_ones_are_kept():
    assert kernel_features(["aes"], "x86_64") == {"aes"}
    assert kernel_features(["aes"], "aarch64") == {"aes", "pmull"}
    assert kernel_features(["avx10.2"], "x86_64") == {"avx10.2"}  # unknown: checked as it is, never dropped
    assert kernel_features(["asimd", "asimddp"], "aarch64") == {"asimd", "asimddp"}  # kernel names pass through
