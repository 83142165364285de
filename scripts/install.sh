#!/usr/bin/env bash
# Install the kit with every extra. On x86 the torch pair comes first, as pinned (other versions pull gigabytes).
# --qemu also builds the arm64 root for the emulated Pi check, --slurm installs SLURM and munge for the cluster test
# (both need root and Debian's mirror; skipped with a warning where that fails: the emulated Pi test then reports
# itself skipped with the reason, the cluster test fails saying why, deselect it with -m "not slurm").
# Debian's chromium is installed for the browser test of `bhvit-device serve` (playwright drives it; its own
# browser download is not used); where apt cannot install it, that test fails saying why (-m "not browser").
set -euo pipefail
for opt in "$@"; do
  [[ "$opt" == --qemu || "$opt" == --slurm ]] || { echo "usage: scripts/install.sh [--qemu] [--slurm]" >&2; exit 2; }
done
cd "$(dirname "$0")/.."
PIP="python3 -m pip install -q --disable-pip-version-check"
if [ "$(uname -m)" = "x86_64" ]; then
  $PIP "torch==2.14.1" "torchvision==0.29.1"
fi
$PIP -e ".[all]"
install_chromium() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get install -y -q chromium >/dev/null 2>&1 && return 0
  $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q chromium >/dev/null 2>&1
}
command -v chromium >/dev/null 2>&1 || install_chromium ||
  echo "WARNING: could not install chromium; the browser test of bhvit-device serve will fail (-m 'not browser')" >&2
if [[ " $* " == *" --qemu "* ]]; then
  bash scripts/qemu_setup.sh || echo "WARNING: could not build the arm64 root; the emulated Pi test will be skipped" >&2
fi
if [[ " $* " == *" --slurm "* ]]; then
  bash scripts/slurm_setup.sh || echo "WARNING: could not install SLURM; the cluster test will fail (-m 'not slurm')" >&2
fi
