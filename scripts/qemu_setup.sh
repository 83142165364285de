#!/usr/bin/env bash
# Build the arm64 Debian bookworm root that scripts/qemu_verify.py runs aarch64 artifacts in (about a minute):
# qemu-user-static, the cross linker, a minimal root unpacked without a second stage, and the aarch64 wheels of
# the device runtime installed with this machine's pip. Needs root and Debian's package mirror.
set -euo pipefail
ROOT=${1:-/var/tmp/pi-root}
WHEELS=${WHEELS:-/var/tmp/pi-wheels}
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap gcc-aarch64-linux-gnu >/dev/null
if [ ! -x "$ROOT/usr/bin/python3.11" ]; then
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  debootstrap --arch=arm64 --variant=minbase --foreign --include=python3 bookworm "$ROOT" ${MIRROR:+"$MIRROR"} >/dev/null
  for d in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg -x "$d" "$ROOT"; done
fi
PLAT="--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none
      --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64
      --platform manylinux2014_aarch64"
# numpy and the TVM runtime run artifacts; pillow, click and tqdm let `bhvit-device eval` run as well.
python3 -m pip download -q $PLAT -d "$WHEELS" "apache-tvm==0.27.0.post1" "apache-tvm-ffi==0.1.14.post1" numpy \
    pillow click tqdm
python3 -m pip install -q --no-index --find-links "$WHEELS" --target "$ROOT/opt/site" --upgrade $PLAT \
    "apache-tvm==0.27.0.post1" "apache-tvm-ffi==0.1.14.post1" numpy pillow click tqdm
echo "arm64 root ready: $ROOT (run: python3 scripts/qemu_verify.py ARTIFACT --root $ROOT)"
