#!/usr/bin/env bash
# Validate the project on one GPU in one call, within BUDGET_S seconds (default 450: 7.5 minutes).
#
#   scripts/device_wheels.sh                      # here, once: the wheels (and CIFAR-10 JPEGs) to carry
#   bash benchmarks/gpu_validate.sh               # there: on the GPU machine, from the repository root
#   bash benchmarks/gpu_validate.sh --dry-run     # anywhere: the same steps on the CPU at tiny sizes
#
# The machine needs Python 3.11+ with torch, torchvision, timm, numpy, matplotlib, scikit-learn,
# tensorboard, tqdm, opencv and pytest; everything else comes from $WHEELS (scripts/device_wheels.sh),
# installed without an index into a temporary site directory. Python runs with -P, so this package
# is imported from its wheel, not from the checkout. Steps (STEPS, in this order):
#   tests     the CUDA-only tests: no host sync in the loss and training steps, bf16 autocast,
#             torch.compile (Inductor) of the loss (tests/core/test_cuda.py, tests/cls/test_cuda_step.py)
#   cls_step  LDA / CE training-step time, ResNet-32, batch 128 (benchmarks/bench_cls_step.py)
#   det_step  LDA / standard ROI-head step time and peak memory, Mask R-CNN R50-FPN, 1203 classes,
#             full resolution (640-800 px), synthetic LVIS-format data (benchmarks/bench_det_step.py)
#   cifar     CIFAR-10-LT IR 100, ResNet-32, CE and LDA side by side, images held on the GPU
#             (DATASET.ON_DEVICE), on the paper's 200-epoch schedule if it fits in what is left of
#             the budget, else on the longest that does (milestones and warm-up scaled; it says so).
# Every figure goes to $OUT (at most 8 files: summary.md, figures.json, env.txt, tests.txt,
# cls_step.txt, det_step.txt, cifar10_lt_{ce,lda}.log); the table is printed at the end.
#
# Environment: OUT (default /tmp/gpu_validate), WORK (scratch, default /tmp/gpu_validate_work),
# WHEELS (default device_wheels), PYTHON (default python3), BUDGET_S, STEPS, CIFAR_EPOCHS (fixed
# instead of "longest that fits"; 200 is the paper's full schedule), CIFAR_TARBALL.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
OUT=${OUT:-/tmp/gpu_validate}
WORK=${WORK:-/tmp/gpu_validate_work}
WHEELS=${WHEELS:-device_wheels}
PYTHON=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-450}
STEPS=${STEPS:-tests cls_step det_step cifar}
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
mkdir -p "$OUT" "$WORK"
rm -f "$WORK"/status.tsv "$WORK"/*.json
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1 LDA_DATASETS=${LDA_DATASETS:-$WORK/datasets}
if [ $DRY_RUN = 1 ]; then
  export CUDA_VISIBLE_DEVICES=""  # the CPU, even on a GPU machine
fi
py() { "$PYTHON" -P "$@"; }  # -P: no checkout on sys.path; the installed wheels are what runs
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$WORK/status.tsv"; echo "== $1: $2 ($3 s)"; }
run_step() {  # run_step NAME COMMAND...: time it, record ok / failed, never stop the others
  local name=$1 begin rc
  shift
  begin=$(date +%s)
  echo "== $name"
  "$@"
  rc=$?
  if [ $rc = 0 ]; then record "$name" ok $(($(date +%s) - begin)); else record "$name" "failed (exit $rc)" $(($(date +%s) - begin)); fi
}

# ---------------------------------------------------------------- install
SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu_validate_site.XXXXXX")
install_wheels() {
  compgen -G "$WHEELS/*.whl" > /dev/null || { echo "no wheels in $WHEELS: run scripts/device_wheels.sh first"; return 1; }
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$SITE" \
    "$WHEELS"/*.whl || return 1
  export PYTHONPATH=$SITE
  py - "$SITE" "$DRY_RUN" <<'PYEOF' 2>&1 | tee "$OUT/env.txt"
import importlib, os, platform, subprocess, sys
site, dry_run = sys.argv[1], sys.argv[2] == "1"
modules = ["torch", "torchvision", "timm", "numpy", "detectron2", "fvcore", "iopath", "yacs", "omegaconf", "lvis",
           "pycocotools.mask", "cv2", "lda_core", "lda_common", "lda_analysis", "lda_cls", "lda_det"]
for name in modules:
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '')} {os.path.dirname(module.__file__)}")
for name in ("lda_core", "lda_common", "lda_analysis", "lda_cls", "lda_det"):  # this package must come from its wheel
    assert importlib.import_module(name).__file__.startswith(site), f"{name} not imported from {site}"
import torch
print("python", platform.python_version(), "| cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(), "| capability", torch.cuda.get_device_capability())
    try:
        print(subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
                             capture_output=True, text=True).stdout)
    except OSError as error:
        print("nvidia-smi:", error)
elif not dry_run:
    sys.exit("no CUDA device: run with --dry-run to check the steps on the CPU")
PYEOF
}
run_step install install_wheels
if ! grep -q "^install	ok" "$WORK/status.tsv"; then
  echo "the wheels did not install or import; nothing else can run"
  exit 1
fi

# ------------------------------------------------------------------ steps
step_tests() {
  py -m pytest -q -rs -p no:cacheprovider --import-mode=importlib tests/core/test_cuda.py tests/cls/test_cuda_step.py \
    2>&1 | tee "$OUT/tests.txt"
  local rc=${PIPESTATUS[0]}
  [ $rc = 0 ] || return $rc
  # On the GPU a skip means the check did not happen.
  if [ $DRY_RUN = 0 ] && grep -q "skipped" "$OUT/tests.txt"; then echo "CUDA tests were skipped"; return 1; fi
}

step_cls_step() {
  local args=(--rounds 20 --warmup 5)
  [ $DRY_RUN = 1 ] && args=(--rounds 2 --warmup 1 --backbone resnet8_cifar --batch 8 --size 16 --threads 1)
  py benchmarks/bench_cls_step.py "${args[@]}" --json "$WORK/cls_step.json" 2>&1 | tee "$OUT/cls_step.txt"
}

step_det_step() {
  local args opts  # opts: KEY VALUE pairs, last on the command line
  if [ $DRY_RUN = 1 ]; then
    args=(--config-file configs/LVIS-LDA/synthetic_lt_demo.yaml --rounds 1 --steps-per-round 1 --warmup 1
          --num-batches 2 --threads 1)
    opts=(SOLVER.IMS_PER_BATCH 2 DATALOADER.NUM_WORKERS 0)
  else
    # 2 images per GPU, as the paper's batch 16 on 8 GPUs; random weights (nothing to download).
    args=(--config-file configs/LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml --rounds 6 --steps-per-round 5 --warmup 3
          --num-batches 6 --threads 4)
    opts=(MODEL.WEIGHTS "" MODEL.DEVICE cuda DATASETS.TRAIN "('synthetic_lt_train',)" DATASETS.TEST "()"
          SOLVER.IMS_PER_BATCH 2 DATALOADER.NUM_WORKERS 4)
  fi
  py benchmarks/bench_det_step.py "${args[@]}" --json "$WORK/det_step.json" "${opts[@]}" 2>&1 | tee "$OUT/det_step.txt"
}

find_cifar_tarball() {
  local candidate
  for candidate in "${CIFAR_TARBALL:-}" "$WHEELS/cifar10-jpg.tar.gz" shared/data/cifar10-jpg.tar.gz \
                   ../shared/data/cifar10-jpg.tar.gz; do
    if [ -n "$candidate" ] && [ -f "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

step_cifar() {
  local root=$WORK/cifar10 tarball
  if [ $DRY_RUN = 1 ]; then
    root=$WORK/cifar10_tiny  # the layout of the real tree, 100 / 10 JPEGs per class
    py - "$root" <<'PYEOF'
import os, sys
import numpy as np
from PIL import Image
rng = np.random.RandomState(0)
for split, per_class in (("train", 100), ("test", 10)):
    for label in range(10):
        folder = os.path.join(sys.argv[1], split, f"class{label}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            pixels = rng.randint(0, 255, (32, 32, 3)).astype(np.uint8)
            pixels[..., label % 3] = 25 * label  # learnable
            Image.fromarray(pixels).save(os.path.join(folder, f"{i:04d}.jpg"))
PYEOF
  elif ! [ -d "$root/train" ]; then
    if ! tarball=$(find_cifar_tarball); then
      echo "no CIFAR-10 tarball (scripts/device_wheels.sh carries it in $WHEELS/): CIFAR-10-LT skipped"
      return 3
    fi
    mkdir -p "$root" && tar xzf "$tarball" -C "$root" || return 1
  fi
  # Decode once into the uint8 cache both runs read; count the training images for the epoch budget.
  py - "$root" "$WORK/cache" "$WORK/cifar_data.json" <<'PYEOF' || return 1
import json, sys
from lda_cls import build_datasets, get_cfg
cfg = get_cfg()
cfg.merge_from_file("configs/cls/cifar10_lt.yaml")
cfg.DATASET.ROOT, cfg.DATASET.CACHE_DIR = sys.argv[1], sys.argv[2]
train, test, counts = build_datasets(cfg)
print("CIFAR-10-LT: train", len(train), "test", len(test), "counts", counts)
json.dump({"train": len(train), "test": len(test), "counts": counts}, open(sys.argv[3], "w"))
PYEOF
  local epochs batch=128 extra=()
  if [ $DRY_RUN = 1 ]; then
    epochs=1 batch=32
    extra=(TEST.BATCH_SIZE 64 NUM_THREADS 1 MODEL.BACKBONE resnet8_cifar)
  elif [ -n "${CIFAR_EPOCHS:-}" ]; then
    epochs=$CIFAR_EPOCHS
  else
    epochs=$(py benchmarks/gpu_validate_summary.py --cifar-epochs "$WORK" $((DEADLINE - $(date +%s)))) || return 1
  fi
  if [ "$epochs" -lt 1 ]; then echo "no time left for one epoch: CIFAR-10-LT skipped"; return 3; fi
  # The paper's schedule scaled to $epochs: lr x0.01 at 80 % and 90 %, 5 warm-up epochs per 200.
  local m1=$((epochs * 160 / 200)) m2=$((epochs * 180 / 200)) warmup=$(((epochs * 5 + 199) / 200))
  echo "CIFAR-10-LT: $epochs of the paper's 200 epochs (milestones $m1, $m2; warm-up $warmup)"
  echo "{\"epochs\": $epochs, \"milestones\": [$m1, $m2], \"warmup\": $warmup, \"batch\": $batch}" > "$WORK/cifar_schedule.json"
  local pids=() method left=$((DEADLINE - $(date +%s) - 20))
  if [ $DRY_RUN = 1 ] || [ "$left" -lt 60 ]; then left=600; fi  # an explicit CIFAR_EPOCHS sets its own BUDGET_S
  for method in ce lda; do
    rm -rf "$WORK/cifar10_lt_$method"
    timeout "$left" "$PYTHON" -P -m lda_cls.train --config-file configs/cls/cifar10_lt.yaml --method "$method" \
      --data-root "$root" --output-dir "$WORK/cifar10_lt_$method" DATASET.CACHE_DIR "$WORK/cache" \
      DATASET.ON_DEVICE True SOLVER.EPOCHS "$epochs" SOLVER.MILESTONES "[$m1, $m2]" SOLVER.WARMUP_EPOCHS "$warmup" \
      SOLVER.BATCH_SIZE "$batch" TEST.EVAL_PERIOD "$epochs" LOG_PERIOD 100 NUM_THREADS 4 CUDNN_BENCHMARK True \
      "${extra[@]}" > "$OUT/cifar10_lt_$method.log" 2>&1 &
    pids+=($!)
  done
  local rc=0 pid
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  [ $rc = 0 ] || { tail -n 20 "$OUT"/cifar10_lt_*.log; return 1; }
}

for step in $STEPS; do
  case $step in
    tests|cls_step|det_step|cifar) run_step "$step" "step_$step" ;;
    *) echo "unknown step $step (tests, cls_step, det_step, cifar)"; exit 2 ;;
  esac
done
sed -i 's/\tfailed (exit 3)\t/\tskipped\t/' "$WORK/status.tsv"  # exit 3: skipped, with the reason in its output

record total ok $(($(date +%s) - START))
py benchmarks/gpu_validate_summary.py "$WORK" "$OUT" --dry-run "$DRY_RUN"
rm -rf "$SITE"
if grep -q "	failed" "$WORK/status.tsv"; then exit 1; fi
