"""benchmarks/gpu_validate.sh --dry-run in an environment shaped like the lent GPU machine.

That machine has torch, timm, numpy 2, ... and none of detectron2, fvcore, iopath, yacs, lvis,
pycocotools; scripts/device_wheels.sh builds what it lacks. Here the scratch environment is a
venv that sees this test environment's packages (torch from the local pin, timm, matplotlib, ...)
through a folder of links that leaves out numpy, setuptools and that stack, plus its own
numpy >= 2 and setuptools >= 81 (no pkg_resources); the device wheels are built for this
interpreter. A fresh install of torch would take minutes and gigabytes; the links take seconds.
Everything is cached under .device_dryrun/ (git-ignored), so a second run skips the set-up.
Building the wheels needs PyPI the first time: the tests skip, saying so, only when it is unreachable.
"""
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".device_dryrun"
# What the GPU machine lacks (built by scripts/device_wheels.sh), numpy (there: 2.x), setuptools
# (there: new, maybe without pkg_resources), and this package (installed from its wheel).
LEFT_OUT = {"sal-detectron2", "detectron2", "lda-longtail", "numpy", "fvcore", "iopath", "yacs", "lvis",
            "pycocotools", "omegaconf", "antlr4-python3-runtime", "hydra-core", "termcolor", "black",
            "setuptools", "pip"}
CARRIED = ("pycocotools", "fvcore", "iopath", "yacs", "termcolor", "lvis", "omegaconf", "antlr4_python3_runtime",
           "sal_detectron2", "lda_longtail")


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/fvcore/", timeout=15).close()
        return True
    except OSError:
        return False


def build_wheels(dest: Path, python_version: str) -> subprocess.CompletedProcess:
    # Pure-Python wheels are the same for every interpreter: reuse those another build has made.
    dest.mkdir(parents=True, exist_ok=True)
    for other in CACHE.glob("wheels-cp*/*-none-any.whl"):
        if not other.name.startswith("lda_longtail-") and not (dest / other.name).exists():
            shutil.copy(other, dest / other.name)
    env = dict(os.environ, PY=sys.executable, PYTHON_VERSION=python_version, CIFAR_TARBALL="none")
    result = subprocess.run(["bash", "scripts/device_wheels.sh", str(dest)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and not pypi_reachable():
        pytest.skip("PyPI is unreachable: scripts/device_wheels.sh cannot download the wheels")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def link_base(base: Path) -> None:
    """A folder of links to this environment's packages, minus LEFT_OUT's files."""
    site = Path(sysconfig.get_paths()["purelib"])
    left_out = set()
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "")).lower()
        if name in LEFT_OUT:
            left_out.update(str(f).split("/")[0] for f in dist.files or [])
    base.mkdir(parents=True)
    for entry in site.iterdir():
        if entry.name in left_out or entry.suffix == ".pth" or entry.name.startswith(("__", "_distutils_hack")):
            continue
        (base / entry.name).symlink_to(entry)


def scratch_python() -> Path:
    if sys.version_info < (3, 11):
        pytest.skip("benchmarks/gpu_validate.sh runs python -P, which needs Python 3.11+ (the GPU machine has 3.12)")
    venv, ready = CACHE / "venv", CACHE / "venv.ready"
    python = venv / "bin" / "python"
    if ready.is_file() and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    shutil.rmtree(CACHE / "base", ignore_errors=True)
    link_base(CACHE / "base")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "device_base.pth").write_text(str(CACHE / "base") + "\n")
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy>=2", "setuptools>=81"],
                             capture_output=True, text=True)
    if install.returncode != 0 and not pypi_reachable():
        pytest.skip("PyPI is unreachable: numpy >= 2 cannot be installed into the scratch environment")
    assert install.returncode == 0, install.stderr[-3000:]
    ready.write_text("ok\n")
    return python


def test_device_wheels_fit_and_install_on_cpython_312():
    dest = CACHE / "wheels-cp312"
    result = build_wheels(dest, "3.12")
    names = sorted(p.name for p in dest.glob("*.whl"))
    assert len(names) == len(CARRIED), names  # one version of each
    for prefix in CARRIED:
        assert sum(n.startswith(prefix + "-") for n in names) == 1, (prefix, names)
    assert any(re.match(r"pycocotools-.*-cp312-.*manylinux.*x86_64.*\.whl", n) for n in names), names
    total = re.search(r"with the tracked working tree \([\d.]+ MiB\): ([\d.]+) MiB", result.stdout)
    assert total and float(total.group(1)) < 64, result.stdout[-2000:]


def test_gpu_validate_dry_run_passes_with_numpy_2(tmp_path):
    python = scratch_python()
    numpy_version = subprocess.run([str(python), "-c", "import numpy; print(numpy.__version__)"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    assert int(numpy_version.split(".")[0]) >= 2
    wheels = CACHE / f"wheels-cp{sys.version_info.major}{sys.version_info.minor}"
    build_wheels(wheels, f"{sys.version_info.major}.{sys.version_info.minor}")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHON=str(python), WHEELS=str(wheels), OUT=str(out), WORK=str(CACHE / "work"),
               LDA_DATASETS=str(CACHE / "datasets"), TMPDIR=str(tmp_path))
    result = subprocess.run(["bash", "benchmarks/gpu_validate.sh", "--dry-run"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["summary.md", "figures.json", "env.txt", "tests.txt", "cls_step.txt", "det_step.txt",
         "cifar10_lt_ce.log", "cifar10_lt_lda.log"])  # the device returns at most 8 files
    env_text = (out / "env.txt").read_text()
    assert re.search(r"^numpy 2\.", env_text, flags=re.M), env_text
    figures = json.loads((out / "figures.json").read_text())
    assert all(state == "ok" for state, _ in figures["status"].values()), figures["status"]
    assert figures["cls_step"]["ce_step_s"] > 0 and figures["cls_step"]["lda_step_s"] > 0
    assert set(figures["det_step"]["median_step_s"]) == {"baseline", "lda"}
    for method in ("ce", "lda"):
        results = figures["cifar10_lt"][method]
        assert results["num_train_images"] == 242 and results["num_test_images"] == 100  # 100 x 0.01^(i/9)
        assert 0 <= results["balanced"]["top1"] <= 100
    assert figures["cifar10_lt"]["lda"]["unbalanced"] is not None
    assert "| check | result |" in result.stdout  # the table is printed at the end


LVIS_EVAL = """
import json, sys
import numpy as np
from lda_det import restore_numpy_aliases
from lda_det.data import synthetic_lt
from lvis import LVIS, LVISEval, LVISResults

gt_file = synthetic_lt.json_path(synthetic_lt.ensure_generated(synthetic_lt.default_root()), "val")
annotations = json.load(open(gt_file))["annotations"]
# Every ground-truth object detected at 0.9, plus a copy with the wrong class at 0.3: AP 1.
detections = [{"image_id": a["image_id"], "category_id": c, "bbox": a["bbox"], "score": s,
               "segmentation": a["segmentation"]}
              for a in annotations for c, s in ((a["category_id"], 0.9), (a["category_id"] % 24 + 1, 0.3))]
gt = LVIS(gt_file)
try:
    LVISEval(gt, LVISResults(gt, [dict(d) for d in detections]), "bbox").run()
    print("without aliases: ran")
except AttributeError as error:
    print("without aliases:", "np.float" if "float" in str(error) else error)
restore_numpy_aliases()
for iou_type in ("bbox", "segm"):
    evaluation = LVISEval(gt, LVISResults(gt, [dict(d) for d in detections]), iou_type)
    evaluation.run()
    print(iou_type, np.__version__, evaluation.results["AP"], evaluation.results["APr"])
"""


def test_lvis_evaluation_runs_under_numpy_2_with_the_restored_aliases(tmp_path):
    """train_net.py's evaluator (lvis 0.5.3) on the synthetic val split, from the device wheels."""
    python = scratch_python()
    wheels = CACHE / f"wheels-cp{sys.version_info.major}{sys.version_info.minor}"
    build_wheels(wheels, f"{sys.version_info.major}.{sys.version_info.minor}")
    site = tmp_path / "site"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target",
                    str(site), *map(str, wheels.glob("*.whl"))], check=True)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(PYTHONPATH=str(site), LDA_DATASETS=str(CACHE / "datasets"))
    result = subprocess.run([str(python), "-P", "-c", LVIS_EVAL], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "without aliases: np.float" in lines  # lvis needs them under numpy 2
    for iou_type in ("bbox", "segm"):
        fields = next(line for line in lines if line.startswith(iou_type)).split()
        assert fields[1].startswith("2.") and float(fields[2]) == pytest.approx(1.0) and float(fields[3]) == 1.0
