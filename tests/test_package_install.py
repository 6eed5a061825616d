"""The project as a user installs it: a wheel built from this checkout, used from another directory.

The checkout's files are copied to a temporary directory (so the build neither
writes into the checkout nor picks up its stale build/), the wheel is built
there offline, and the README's package-install line installs it, without
dependencies, into a temporary --target. The commands then run with that target
first on PYTHONPATH, from an empty working directory, so nothing can come from
the checkout (the editable install of the test environment maps lda_* there);
torch, detectron2 and the rest come from the test environment.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Every config of the repository, and where the wheel must carry it.
CONFIG_HOMES = {"cls": "lda_cls/configs/cls", "LVIS-LDA": "lda_det/configs/LVIS-LDA"}
OFFLINE_PIP = ["--no-deps", "--no-build-isolation", "--no-index"]  # no network: build with this environment's setuptools
TIMEOUT_S = 600

MODEL_ZOO_SCRIPT = r"""
import json, os, sys
import lda_analysis, lda_cls, lda_common, lda_core, lda_det
from lda_det import model_zoo
from lda_det.data import synthetic_lt

def dump(name, value):
    with open(os.path.join(sys.argv[1], name + ".json"), "w") as f:
        json.dump(value, f)

dump("modules", [module.__file__ for module in (lda_analysis, lda_cls, lda_common, lda_core, lda_det, model_zoo)])
dump("synthetic_root", synthetic_lt.default_root())
cfg = model_zoo.get_config("LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml")
model = model_zoo.get("LVIS-LDA/synthetic_lt_demo.yaml", device="cpu")  # generates the synthetic data
dump("model_zoo", {
    "config_file": model_zoo.get_config_file("LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml"),
    "roi_heads": cfg.MODEL.ROI_HEADS.NAME,
    "box_predictor": cfg.MODEL.ROI_BOX_HEAD.PREDICTOR,
    "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
    "weights": cfg.MODEL.WEIGHTS,
    "train": list(cfg.DATASETS.TRAIN),
    "demo_predictor": type(model.roi_heads.box_predictor).__name__,
    "demo_num_classes": model.roi_heads.num_classes,
    "demo_training": model.training,
})
"""


def readme_install_command():
    """The README's package-install line (the one line that starts with `pip install`), as arguments."""
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("pip install")]
    assert len(lines) == 1, f"README.md should have one package-install line, found {lines}"
    command = shlex.split(lines[0], comments=True)
    assert command == ["pip", "install", "."], lines[0]
    return command


def copy_checkout(destination: Path) -> None:
    """The files git would commit (tracked, and untracked but not ignored), as they are in the working tree."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # tracked files deleted in the working tree are listed too
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def run(args, cwd, env=None):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def file_listing(root: Path) -> dict:
    return {str(path.relative_to(root)): path.stat().st_size for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def checkout_copy(tmp_path_factory):
    if not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know which files are the project's")
    source = tmp_path_factory.mktemp("source")
    copy_checkout(source)
    return source


@pytest.fixture(scope="module")
def wheel(checkout_copy, tmp_path_factory):
    out = tmp_path_factory.mktemp("wheelhouse")
    result = run([sys.executable, "-m", "pip", "wheel", ".", *OFFLINE_PIP, "-w", str(out)], cwd=checkout_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(checkout_copy, tmp_path_factory):
    """The README's install line, made offline and pointed at a temporary --target."""
    target = tmp_path_factory.mktemp("target")
    command = readme_install_command()
    result = run([sys.executable, "-m", *command, *OFFLINE_PIP, "--target", str(target)], cwd=checkout_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


@pytest.fixture(scope="module")
def commands(installed, tmp_path_factory):
    """Run every command from an empty directory against the installed target; return their results.

    Independent commands run in parallel (each on one thread) to keep the test short.
    """
    workdir = tmp_path_factory.mktemp("workdir")
    cache = tmp_path_factory.mktemp("cache")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "LDA_DATASETS")}
    env.update(PYTHONPATH=str(installed), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               XDG_CACHE_HOME=str(cache), MPLBACKEND="Agg", MPLCONFIGDIR=str(cache / "matplotlib"))
    before = file_listing(installed)
    python = [sys.executable]
    jobs = {
        "model_zoo": python + ["-c", MODEL_ZOO_SCRIPT, str(workdir)],
        "train_digits": python + ["-m", "lda_cls.train", "--dataset", "digits_lt", "--output-dir", "digits_run",
                                  "SOLVER.EPOCHS", "1"],
        # No CIFAR here and no download: the run must stop at the data root the config names.
        "train_cifar": python + ["-m", "lda_cls.train", "--dataset", "cifar10_lt", "--output-dir", "cifar_run",
                                 "DATASET.DOWNLOAD", "False"],
        "stats": python + ["-m", "lda_cls.stats", "--dataset", "digits_lt", "--json"],
    }
    logs = {}
    processes = {}
    for name, args in jobs.items():
        logs[name] = (open(workdir / f"{name}.out", "w+"), open(workdir / f"{name}.err", "w+"))
        processes[name] = subprocess.Popen(args, cwd=workdir, env=env, stdout=logs[name][0], stderr=logs[name][1],
                                           text=True)
    results = {}
    for name, process in processes.items():
        returncode = process.wait(timeout=TIMEOUT_S)
        outputs = []
        for log in logs[name]:
            log.seek(0)
            outputs.append(log.read())
            log.close()
        results[name] = subprocess.CompletedProcess(jobs[name], returncode, *outputs)
    if results["train_digits"].returncode == 0:  # analyze needs the run
        results["analyze"] = run(python + ["-m", "lda_cls.analyze", "digits_run", "--no-tsne", "--out", "analysis"],
                                 cwd=workdir, env=env)
    return {"results": results, "workdir": workdir, "cache": cache, "target": installed,
            "target_before": before, "target_after": file_listing(installed)}


def _ok(result):
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_wheel_carries_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for subdir, home in CONFIG_HOMES.items():
        # Subfolders too (configs/cls/methods/).
        expected = sorted(str(path.relative_to(REPO / "configs" / subdir))
                          for path in (REPO / "configs" / subdir).rglob("*.yaml"))
        assert expected, f"configs/{subdir} has no YAML file"
        carried = sorted(name[len(home) + 1:] for name in names if name.startswith(home + "/"))
        assert carried == expected, f"{wheel.name}: {home}/ holds {carried}, configs/{subdir}/ has {expected}"
    # Each package carries its own configs only, and nothing lands in site-packages/configs.
    stray = [name for name in names if name.endswith(".yaml")
             and not any(name.startswith(home + "/") for home in CONFIG_HOMES.values())]
    assert not stray, stray
    assert any(name.startswith("lda_det/model_zoo.py") for name in names)
    assert "lda_det/data/lvis_v1_train_category_counts.csv" in names  # inference needs no LVIS json


def _report(commands, name):
    path = commands["workdir"] / f"{name}.json"
    assert path.is_file(), f"the model-zoo script stopped before writing {path.name}:\n" + \
        commands["results"]["model_zoo"].stderr[-3000:]
    return json.loads(path.read_text())


def test_install_imports_from_the_target(installed, commands):
    for module_file in _report(commands, "modules"):
        assert Path(module_file).is_relative_to(installed), f"{module_file} is not from the installed target"


def test_model_zoo_from_the_install(installed, commands):
    _ok(commands["results"]["model_zoo"])
    report = _report(commands, "model_zoo")
    assert Path(report["config_file"]) == installed / "lda_det/configs/LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml"
    # Values from two _BASE_ levels up (Base-LDA-Mask-RCNN-FPN.yaml, Base-Mask-RCNN-FPN-LVIS.yaml);
    # detectron2's defaults are Res5ROIHeads, 80 classes, no weights, no training set.
    assert (report["roi_heads"], report["box_predictor"]) == ("PredictorROIHeads", "LDAOutputLayers")
    assert report["num_classes"] == 1203
    assert report["weights"] == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    assert report["train"] == ["lvis_v1_train"]
    # get() built the demo model, whose class counts come from the generated synthetic data.
    assert report["demo_predictor"] == "LDAOutputLayers"
    assert report["demo_num_classes"] == 24
    assert report["demo_training"] is False


def test_generated_data_goes_to_the_user_cache(commands):
    root = Path(_report(commands, "synthetic_root"))
    assert root.parent == commands["cache"] / "lda"  # $XDG_CACHE_HOME/lda
    _ok(commands["results"]["model_zoo"])
    assert (root / "COMPLETE").is_file() and (root / "synthetic_lt_train.json").is_file()


def test_train_finds_the_packaged_dataset_config(commands):
    _ok(commands["results"]["train_digits"])
    run_dir = commands["workdir"] / "digits_run"
    # NAME is set by configs/cls/digits_lt.yaml only (the built-in default is "digits_lt_lda").
    assert "NAME: digits_lt_resnet8_30ep" in (run_dir / "config.yaml").read_text().splitlines()
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["dataset"], results["num_train_images"], results["num_test_images"]) == ("digits_lt", 421, 500)


def test_train_resolves_the_cifar_config_up_to_its_data(commands):
    result = commands["results"]["train_cifar"]
    assert result.returncode != 0
    assert "no default config" not in result.stderr
    # "datasets/cifar10" is DATASET.ROOT of configs/cls/cifar10_lt.yaml (the default is empty).
    assert "cifar10_lt: data root does not exist: datasets/cifar10" in result.stderr, result.stderr[-3000:]


def test_stats_from_the_install(commands):
    result = commands["results"]["stats"]
    _ok(result)
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert (stats["dataset"], stats["num_images"], stats["num_classes"]) == ("digits_lt", 421, 10)
    # n_max = the smallest pool (174 eights - 50 for the test set - 20 for validation), the tail floor(104 / 10)
    assert stats["max_per_class"] == 104 and stats["min_per_class"] == 10


def test_analyze_from_the_install(commands):
    assert "analyze" in commands["results"], "the digits training failed, so there is nothing to analyze"
    _ok(commands["results"]["analyze"])
    analysis = commands["workdir"] / "analysis"
    assert (analysis / "report.html").is_file()
    assert (analysis / "weight_norms.png").is_file()


def test_nothing_is_written_into_the_install(commands):
    assert commands["target_after"] == commands["target_before"]


def test_checkout_reads_the_repository_configs():
    """From the source tree (no package data next to the code) both packages read configs/."""
    import lda_cls
    from lda_cls.config import configs_root

    if not Path(lda_cls.__file__).resolve().is_relative_to(REPO):
        pytest.skip("lda_cls is not imported from this checkout")
    from lda_det import model_zoo

    assert configs_root() == REPO / "configs"
    assert Path(model_zoo.CONFIGS_ROOT) == REPO / "configs"
    assert Path(model_zoo.get_config_file("LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml")).is_file()
