#!/usr/bin/env bash
# Every detection method of lda_det on real LVIS v1, Mask R-CNN R50-FPN 1x, the paper's setting
# (configs/LVIS-LDA/*mask_rcnn_R_50_FPN_1x.yaml: one base, RFS 1e-3, scale jitter 640-800, 90k
# iterations at batch 16): one method a config, as bench_det_synthetic.py --list reads them; a two-stage
# one (cRT) after its stage 1, from that one's model_final.pth. One table of bbox / segm AP, AP_r, AP_c, AP_f.
#
#   DETECTRON2_DATASETS=/data bash benchmarks/gpu_det_lvis_methods.sh [OUT_DIR] [METHOD ...]
#
# Needs $DETECTRON2_DATASETS/lvis/lvis_v1_{train,val}.json and coco/{train2017,val2017} (detectron2's
# layout); exits 2 naming what is missing. NUM_GPUS defaults to every visible GPU; the configs' batch
# 16 and lr 0.02 are kept whatever the GPU count (IMS_PER_BATCH is global in detectron2). Resumable:
# each method trains in OUT_DIR/<method> with --resume, and a method whose final evaluation is in its
# metrics.json is skipped. Budget: 90k iterations of 16 images per head (cRT: its config's stage 2),
# hours per head on 8 GPUs and days on one: name a subset of METHODS on the command line to split it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/gpu_det_lvis_methods}
shift $(( $# > 0 ? 1 : 0 ))
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
# METHOD CONFIG STAGE1 ('-': none) per line, from the configs (bench_det_synthetic.py's METHODS).
declare -A CONFIG STAGE1
ALL=()
while read -r method config stage1; do
  ALL+=("$method"); CONFIG[$method]=$config; STAGE1[$method]=$stage1
done < <("$PY" benchmarks/bench_det_synthetic.py --list)
[ ${#ALL[@]} -gt 0 ] || { echo "gpu_det_lvis_methods.sh: bench_det_synthetic.py --list named no method" >&2; exit 2; }
METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=("${ALL[@]}")
NUM_GPUS=${NUM_GPUS:-$( (nvidia-smi -L 2>/dev/null || true) | wc -l)}
DATA=${DETECTRON2_DATASETS:-datasets}
for file in lvis/lvis_v1_train.json lvis/lvis_v1_val.json coco/train2017 coco/val2017; do
  if [ ! -e "$DATA/$file" ]; then
    echo "gpu_det_lvis_methods.sh: $DATA/$file not found (set DETECTRON2_DATASETS to detectron2's datasets root)" >&2
    exit 2
  fi
done
[ "$NUM_GPUS" -ge 1 ] || { echo "gpu_det_lvis_methods.sh: no GPU visible" >&2; exit 2; }

evaluated() {  # the last line of metrics.json with a final bbox/AP
  [ -f "$OUT/$1/metrics.json" ] && grep -q '"bbox/AP"' "$OUT/$1/metrics.json"
}

mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for method in "${METHODS[@]}"; do
  config=${CONFIG[$method]:-}
  [ -n "$config" ] || { echo "unknown method $method: not one of ${ALL[*]}" >&2; exit 2; }
  if evaluated "$method"; then echo "$method: done, skipped"; continue; fi
  extra=()
  stage1=${STAGE1[$method]}
  if [ "$stage1" != - ]; then
    weights="$OUT/$stage1/model_final.pth"
    [ -f "$weights" ] || { echo "$method needs $stage1's $weights: run $stage1 first" >&2; exit 2; }
    extra=(MODEL.WEIGHTS "$weights")
  fi
  echo "$(date -u +%H:%M:%S) $method: $config on $NUM_GPUS GPU(s) -> $OUT/$method"
  "$PY" projects/LDA/train_net.py --config-file "$config" --num-gpus "$NUM_GPUS" --resume \
      OUTPUT_DIR "$OUT/$method" "${extra[@]}" 2>&1 | tee -a "$OUT/$method.log" | grep -E "Starting training|eta:|AP" || true
  evaluated "$method" || { echo "$method: training or evaluation failed, see $OUT/$method.log" >&2; exit 1; }
done

"$PY" - "$OUT" "${METHODS[@]}" <<'EOF'
import json, os, sys
out, methods = sys.argv[1], sys.argv[2:]
keys = [f"{task}/{m}" for task in ("bbox", "segm") for m in ("AP", "APr", "APc", "APf")]
print("| method | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
for method in methods:
    with open(os.path.join(out, method, "metrics.json")) as f:
        final = [json.loads(line) for line in f if '"bbox/AP"' in line][-1]
    print(f"| {method} | " + " | ".join(f"{final[k]:.1f}" for k in keys) + " |")
EOF
