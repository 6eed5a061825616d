#!/usr/bin/env bash
# One-command set-up: a virtual environment with torch, detectron2 and this project.
# Usage: scripts/setup.sh            (creates ./.venv)
#        VENV=/path/to/env scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
# detectron2's model_zoo imports pkg_resources (gone in setuptools 81) and its
# compiled parts were built against the numpy 1 ABI.
"$PY" -m pip install -q "setuptools<81" wheel "numpy<2"
# Keep a working torch (e.g. a cluster's CUDA build); otherwise the pinned pair,
# which lies on this machine's disk (any other version downloads gigabytes).
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi

# Detectron2: keep a working one (e.g. a source build with CUDA ops); otherwise
# install the PyPI repackaging of upstream detectron2 (see README, "Detectron2").
if ! "$PY" -c "import detectron2" 2>/dev/null; then
  "$PY" scripts/install_detectron2.py
fi

"$PY" -m pip install -q -e ".[dev]"
"$PY" -c "import torch, detectron2, timm, lda_core; print('torch', torch.__version__, '| detectron2', detectron2.__version__, '| timm', timm.__version__)"
