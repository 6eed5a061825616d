#!/usr/bin/env bash
# Every compared method (lda_cls/methods) with its paper's full schedule, on one GPU:
# CIFAR-100-LT at IR 10, 50 and 100, then ImageNet-LT.
#
#   bash benchmarks/gpu_methods.sh [OUT_DIR]          (default /tmp/gpu_methods)
#
# Each dataset is one `benchmarks/bench_methods.py --paper-schedule --methods all --seeds 0` (resumable: a run
# whose result file exists is skipped; re-run the script after an interruption), which writes one
# OUT_DIR/results/<dataset>/<method>_seed0.json per run; `benchmarks/results_table.py OUT_DIR/results/*`
# prints the tables. Copy the result folders to benchmarks/results/ to commit them. Schedules: configs/cls/<dataset>.yaml and
# configs/cls/methods/<method>.yaml unchanged -- CIFAR: ResNet-32, 200 epochs, batch 128, lr 0.1,
# x0.01 at 160 and 180, DRW/DRS at 160 (Cao et al. 2019); cRT/LWS 10 epochs from the CE run (Kang et
# al. 2020). ImageNet-LT: ResNeXt-50, 90 epochs (configs/cls/imagenet_lt.yaml); the deferred switches
# at epoch 72, the CIFAR schedule's 0.8 point (160 / 200), set below. tau-norm chooses tau on
# ImageNet-LT's validation split; CIFAR-LT has none, so tau = 1 there (bench_methods.py).
#
# Data: CIFAR100_ROOT (torchvision's cifar-100-python, or an image-folder tree with train/ and test/;
# default OUT_DIR/cifar100, downloaded by torchvision when online); IMAGENET_ROOT (the ImageNet
# images) and IMAGENET_LT_SPLITS (the folder of ImageNet_LT_{train,val,test}.txt): ImageNet-LT is
# skipped when IMAGENET_ROOT is unset.
# Budget: CIFAR-100-LT is ~2-3 min per method on an H100 with JOBS=6 concurrent processes (ResNet-32
# leaves the GPU mostly idle), i.e. 20 methods x 3 ratios in roughly 1 h; ImageNet-LT is ~1-2 h per
# method (JOBS_IMAGENET=1). These are estimates, not measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/gpu_methods}
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
JOBS=${JOBS:-6}
JOBS_IMAGENET=${JOBS_IMAGENET:-1}
CIFAR100_ROOT=${CIFAR100_ROOT:-$OUT/cifar100}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

for ratio in 10 50 100; do
  "$PY" benchmarks/bench_methods.py --dataset cifar100_lt --imbalance-ratio "$ratio" --paper-schedule \
      --data-root "$CIFAR100_ROOT" --methods all --seeds 0 --work-dir "$OUT" --results-dir "$OUT/results/cifar100_lt_ir$ratio" \
      --jobs "$JOBS" --threads 2 \
      --opts LOG_PERIOD 200 CUDNN_BENCHMARK True
done

if [ -n "${IMAGENET_ROOT:-}" ]; then
  SPLITS=${IMAGENET_LT_SPLITS:?set IMAGENET_LT_SPLITS to the folder of ImageNet_LT_{train,val,test}.txt}
  "$PY" benchmarks/bench_methods.py --dataset imagenet_lt --paper-schedule --data-root "$IMAGENET_ROOT" \
      --methods all --seeds 0 --work-dir "$OUT" --results-dir "$OUT/results/imagenet_lt" --jobs "$JOBS_IMAGENET" --threads 8 \
      --opts LOG_PERIOD 200 CUDNN_BENCHMARK True DATASET.NUM_WORKERS 8 \
             DATASET.TRAIN_SPLIT_FILE "$SPLITS/ImageNet_LT_train.txt" \
             DATASET.VAL_SPLIT_FILE "$SPLITS/ImageNet_LT_val.txt" \
             DATASET.TEST_SPLIT_FILE "$SPLITS/ImageNet_LT_test.txt" \
             REWEIGHT.START_EPOCH 72 SAMPLER.DEFERRED_EPOCH 72
else
  echo "skip ImageNet-LT: IMAGENET_ROOT is not set"
fi
"$PY" benchmarks/results_table.py "$OUT"/results/*
