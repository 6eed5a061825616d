#!/usr/bin/env bash
# CIFAR-10-LT (IR 100, 12,406 images), the paper's full schedule, CE and LDA, on one GPU.
#
#   bash benchmarks/gpu_cifar10_lt.sh [OUT_DIR]        (default /tmp/gpu_cifar10_lt)
#
# Schedule: configs/cls/cifar10_lt.yaml unchanged -- ResNet-32, 200 epochs, batch 128,
# SGD lr 0.1, 5 warm-up epochs, x0.01 at epochs 160 and 180, wd 2e-4; LDA gamma 1.0, beta 0.5.
# Budget: ~10 minutes on one H100 for both runs. The two runs share the GPU as two processes
# (ResNet-32 at batch 128 leaves an H100 mostly idle); images stay in memory as uint8 and the
# pad-crop/flip/normalise augmentation runs on the GPU (BatchPreprocess), bf16 autocast and
# channels_last are on, and the loop syncs with the host only every LOG_PERIOD steps.
# Data: ../shared/data/cifar10-jpg.tar.gz or shared/data/... (JPEG image-folder tree), else
# torchvision's download into $OUT/cifar10 (needs internet).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/gpu_cifar10_lt}
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"

DATA_ROOT="$OUT/cifar10"
for tarball in ../shared/data/cifar10-jpg.tar.gz shared/data/cifar10-jpg.tar.gz; do
  if [ -f "$tarball" ] && [ ! -d "$DATA_ROOT/train" ]; then
    mkdir -p "$DATA_ROOT" && tar xzf "$tarball" -C "$DATA_ROOT"
  fi
done

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# Decode the JPEGs once into the uint8 cache, so the two runs below do not both decode them.
"$PY" - "$DATA_ROOT" "$OUT/cache" <<'PYEOF'
import sys
from lda_cls import build_datasets
from lda_cls.train import build_parser, setup_cfg
cfg = setup_cfg(build_parser().parse_args(["--dataset", "cifar10_lt", "--data-root", sys.argv[1],
                                           "DATASET.CACHE_DIR", sys.argv[2]]))
train, test, counts = build_datasets(cfg)
print("train", len(train), "test", len(test), "counts", counts)
PYEOF

start=$(date +%s)
pids=()
for method in ce lda; do
  "$PY" -m lda_cls.train --dataset cifar10_lt --method "$method" --data-root "$DATA_ROOT" \
      --output-dir "$OUT/cifar10_lt_$method" DATASET.CACHE_DIR "$OUT/cache" LOG_PERIOD 200 \
      NUM_THREADS 4 CUDNN_BENCHMARK True > "$OUT/cifar10_lt_$method.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
echo "wall time for both runs: $(( $(date +%s) - start )) s"
[ $status -eq 0 ] || { echo "a run failed; see $OUT/*.log"; tail -n 30 "$OUT"/*.log; exit 1; }

"$PY" - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
rows = {m: json.load(open(f"{out}/cifar10_lt_{m}/results.json")) for m in ("ce", "lda")}
fmt = lambda v: "-" if v is None else f"{v:.2f}"
print("| CIFAR-10-LT IR 100, ResNet-32, 200 ep | top-1 | many | medium | few |")
print("|---|---|---|---|---|")
for name, m in (("CE", rows["ce"]["balanced"]), ("LDA (h)", rows["lda"]["balanced"]),
                ("LDA (h')", rows["lda"]["unbalanced"])):
    print(f"| {name} | {fmt(m['top1'])} | {fmt(m['many'])} | {fmt(m['medium'])} | {fmt(m['few'])} |")
print(f"LDA - CE: {rows['lda']['balanced']['top1'] - rows['ce']['balanced']['top1']:+.2f} points")
PYEOF
