#!/usr/bin/env bash
# Set up and run the test suite (the README's second command; .ci/run calls this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python -m pytest -q -p no:cacheprovider "$@"
