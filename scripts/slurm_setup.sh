#!/usr/bin/env bash
# Install Debian's SLURM (controller, node daemon, client commands) and munge for the test that runs the mini study
# through a real one-node cluster; the test starts and stops its own daemons. Needs root and Debian's package mirror.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
  exit 0
fi
install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }
install || { apt-get update -qq && install; }
