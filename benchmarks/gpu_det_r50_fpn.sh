#!/usr/bin/env bash
# The real LDA Mask R-CNN R50-FPN config (configs/LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml:
# 1203 classes, shorter side 640-800, repeat factor sampling) on one GPU for a few hundred
# iterations, on the synthetic dataset (no LVIS needed; its 128 px images are resized to
# full resolution by the usual augmentation) from random weights (no download needed).
# Reports the iteration time and peak GPU memory, then the LDA / standard ROI head
# step-time ratio at this scale. 2 images per GPU, as the paper's batch 16 on 8 GPUs.
#
#   bash benchmarks/gpu_det_r50_fpn.sh [ITERS=300]   (writes into $OUT or /tmp/gpu_det_r50_fpn)
set -euo pipefail
ITERS=${1:-300}
OUT=${OUT:-/tmp/gpu_det_r50_fpn}
PY=${PYTHON:-python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

COMMON=(MODEL.WEIGHTS "" MODEL.DEVICE cuda DATASETS.TRAIN "('synthetic_lt_train',)" DATASETS.TEST "()"
        SOLVER.IMS_PER_BATCH 2 SOLVER.BASE_LR 0.0025 DATALOADER.NUM_WORKERS 6)

for HEAD in LDAROIHeads StandardROIHeads; do
  $PY projects/LDA/train_net.py --config-file configs/LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml \
    "${COMMON[@]}" MODEL.ROI_HEADS.NAME $HEAD SOLVER.MAX_ITER "$ITERS" SOLVER.STEPS "($ITERS,)" \
    SOLVER.CHECKPOINT_PERIOD 100000 OUTPUT_DIR "$OUT/$HEAD" 2>&1 | tail -n 5 | tee "$OUT/$HEAD.tail.txt"
  # metrics.json: "time" (s/iter) every 20 iterations; log.txt: detectron2's "max_mem: <MB>M".
  $PY - "$OUT/$HEAD" "$HEAD" <<'PYEOF' | tee -a "$OUT/summary.txt"
import json, re, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1] + "/metrics.json")]
times = [r["time"] for r in rows if "time" in r and r.get("iteration", 0) >= 40]  # skip warm-up
mem = max((float(m) for m in re.findall(r"max_mem: (\d+)M", open(sys.argv[1] + "/log.txt").read())), default=0)
print(f"{sys.argv[2]}: median iteration {statistics.median(times):.4f} s over {len(times)} logged windows, "
      f"peak memory {mem:.0f} MB (torch.cuda.max_memory_allocated)")
PYEOF
done

# Interleaved step timing of the two ROI heads on identical batches.
$PY benchmarks/bench_det_step.py --config-file configs/LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml \
  --threads 4 --rounds 10 --steps-per-round 10 "${COMMON[@]}" | tee -a "$OUT/summary.txt"
