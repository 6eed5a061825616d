#!/usr/bin/env bash
# Build, here, every wheel a GPU machine without a package registry lacks for this project,
# into one git-ignored folder that travels with the working tree (see README, "Validating on a GPU").
#
#   scripts/device_wheels.sh [DEST]          (default device_wheels/)
#
# The target machine (the lent H100 / H200) runs CPython 3.12 with torch, torchvision, timm,
# numpy 2, matplotlib, scikit-learn, tensorboard, tqdm, pyyaml, pillow, tabulate, portalocker,
# cloudpickle, opencv and pytest, and nothing below. The closure, worked out from what the code
# that benchmarks/gpu_validate.sh runs imports (detectron2's own Requires-Dist lists neither
# fvcore nor iopath, which it imports):
#   detectron2 (sal-detectron2, re-tagged by scripts/install_detectron2.py) -> fvcore, iopath,
#   yacs, termcolor, pycocotools, omegaconf -> antlr4-python3-runtime; its LVIS loader -> lvis;
#   lda_cls -> fvcore; and this package itself. detectron2's hydra-core and black are imported
#   only by LazyConfig's overrides / save, which nothing here calls.
#
# Environment: PYTHON_VERSION (target interpreter, default 3.12), PY (the python that runs pip;
# default .venv/bin/python, else python3), LIMIT_MIB (default 64: the device's limit on the
# working tree plus carried folders), CIFAR_TARBALL (the CIFAR-10 JPEG tarball to carry along;
# default ../shared/data/cifar10-jpg.tar.gz or shared/data/..., "none" to leave it out).
# Third-party wheels already in DEST are kept (one version of each; others are deleted);
# the wheel of this package is rebuilt every time.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-device_wheels}
TARGET_PY=${PYTHON_VERSION:-3.12}
LIMIT_MIB=${LIMIT_MIB:-64}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

# Compiled: downloaded for the target interpreter.
BINARY=(pycocotools==2.0.11)
# Pure Python: PyPI's wheel, or one built from the sdist (fvcore, antlr4-python3-runtime have none).
PURE=(fvcore==0.1.5.post20221221 iopath==0.1.10 yacs==0.1.8 termcolor==3.3.0 lvis==0.5.3
      omegaconf==2.3.1 antlr4-python3-runtime==4.9.3)
DETECTRON2=sal-detectron2==0.7.2  # must match scripts/install_detectron2.py's PACKAGE
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

mkdir -p "$DEST"
wheel_file() {  # the wheel of NAME==VERSION in DEST, if any (wheel names use _ and lower case)
  local name=${1%%==*} version=${1##*==}
  name=$(echo "$name" | tr 'A-Z-' 'a-z_')
  compgen -G "$DEST/${name}-${version}-*.whl" | head -n 1 || true
}
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done

expected=()
for pin in "${BINARY[@]}"; do
  if [ -z "$(wheel_file "$pin")" ]; then
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$TARGET_PY" --implementation cp \
      "${platform_args[@]}" -d "$DEST" "$pin"
  fi
  expected+=("$(wheel_file "$pin")")
done
for pin in "${PURE[@]}"; do
  if [ -z "$(wheel_file "$pin")" ]; then
    "$PY" -m pip wheel -q --no-deps -w "$DEST" "$pin"
  fi
  expected+=("$(wheel_file "$pin")")
done
if [ -z "$(wheel_file "$DETECTRON2")" ]; then
  "$PY" scripts/install_detectron2.py --wheel-dir "$DEST"
fi
expected+=("$(wheel_file "$DETECTRON2")")

# This package: always rebuilt, from the working tree (no isolation: setuptools and wheel are here).
rm -f "$DEST"/lda_longtail-*.whl
build_isolation=--no-build-isolation
"$PY" -c "import setuptools, wheel" 2>/dev/null || build_isolation=
"$PY" -m pip wheel -q --no-deps $build_isolation -w "$DEST" .
expected+=("$(compgen -G "$DEST/lda_longtail-*.whl" | head -n 1)")

# One version of each: drop every wheel that is not in the list above.
for file in "$DEST"/*.whl; do
  keep=0
  for e in "${expected[@]}"; do [ "$file" = "$e" ] && keep=1; done
  if [ $keep = 0 ]; then echo "removing stale $file"; rm -f "$file"; fi
done
for file in "${expected[@]}"; do
  case "$file" in
    ""|*-cp3*-*.whl|*-py3-none-any.whl|*-py2.py3-none-any.whl) ;;
    *) echo "unexpected wheel tag (not pure Python): $file" >&2; exit 1 ;;
  esac
  [ -n "$file" ] || { echo "a wheel is missing in $DEST" >&2; exit 1; }
done

# The wheels must install on the target interpreter as they will there (no index, no dependencies).
"$PY" -m pip install -q --dry-run --ignore-installed --no-index --no-deps --only-binary=:all: \
  --python-version "$TARGET_PY" --implementation cp "${platform_args[@]}" --target "$(mktemp -d)" "$DEST"/*.whl

# The CIFAR-10 JPEGs, for the CIFAR-10-LT runs (../shared/data does not travel with the tree).
tarball=${CIFAR_TARBALL:-}
if [ -z "$tarball" ]; then
  # A git worktree's shared/ is the one beside the main checkout.
  main_checkout=$(dirname "$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo .git)")
  for candidate in ../shared/data/cifar10-jpg.tar.gz shared/data/cifar10-jpg.tar.gz \
                   "$main_checkout/../shared/data/cifar10-jpg.tar.gz"; do
    [ -f "$candidate" ] && { tarball=$candidate; break; }
  done
fi
if [ -n "$tarball" ] && [ "$tarball" != none ]; then
  if ! cmp -s "$tarball" "$DEST/cifar10-jpg.tar.gz"; then
    rm -f "$DEST/cifar10-jpg.tar.gz" && cp "$tarball" "$DEST/cifar10-jpg.tar.gz" && chmod u+w "$DEST/cifar10-jpg.tar.gz"
  fi
else
  rm -f "$DEST/cifar10-jpg.tar.gz"
  echo "no CIFAR-10 tarball carried (gpu_validate.sh will skip the CIFAR-10-LT runs)"
fi

ls -l "$DEST"
folder_bytes=$(du -sb "$DEST" | cut -f1)
tree_bytes=$( (git ls-files -z 2>/dev/null || true) | xargs -0 -r du -cb 2>/dev/null | tail -n 1 | cut -f1)
tree_bytes=${tree_bytes:-0}
total=$((folder_bytes + tree_bytes))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "$DEST: $(mib "$folder_bytes") MiB; with the tracked working tree ($(mib "$tree_bytes") MiB): $(mib "$total") MiB" \
     "(limit $LIMIT_MIB MiB)"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "over the limit of $LIMIT_MIB MiB" >&2
  exit 1
fi
