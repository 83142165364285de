#!/usr/bin/env bash
# Install the kit with every extra. On x86 the torch pair comes first, as pinned (other versions pull gigabytes).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install -q --disable-pip-version-check"
if [ "$(uname -m)" = "x86_64" ]; then
  $PIP "torch==2.14.1" "torchvision==0.29.1"
fi
$PIP -e ".[all]"
