#!/usr/bin/env bash
# The README's first command: install, then run the whole kit end to end on an embedded default, offline, on CPU:
# train a tiny BHViT (FP phase, then binary phase) on generated data, compile it for this machine with the
# bit-serial kernels, classify the bundled sample photos and benchmark it (latency and peak RAM).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
OUT=${BHVIT_DEMO_DIR:-runs/demo}
export TVM_NUM_THREADS=${TVM_NUM_THREADS:-$(nproc)}

echo "== 1/4 train: test_bhvit, FP phase then binary phase, 2 epochs each, generated 10-class data"
bhvit-train --model test_bhvit --dataset synthetic --data-dir "$OUT/data" --epochs 2 --warmup-epochs 0 \
    --eval-every 1 --no-distill --workers 0 --out "$OUT/train" --overwrite -q

echo "== 2/4 compile for this machine (XNOR/popcount kernels, verified against PyTorch)"
bhvit-compile "$OUT/train/phase2/best.safetensors" --target host --output "$OUT/artifact" --overwrite

echo "== 3/4 classify the bundled sample photos (a model trained on generated stripes: the labels are not pets)"
rm -f "$OUT/classify.csv"  # --log refuses to overwrite an existing log
bhvit-device classify --artifact "$OUT/artifact" --log "$OUT/classify.csv"

echo "== 4/4 benchmark inference alone"
bhvit-device bench --artifact "$OUT/artifact" --runs 30
