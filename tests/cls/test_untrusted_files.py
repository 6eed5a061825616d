"""Every file lda_cls reads is loaded with torch.load(weights_only=True): a crafted pickle runs nothing and is
refused in one line naming the file (lda_common/checkpoint_io.py)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lda_cls import get_cfg
from lda_cls.train import main
from lda_common.checkpoint_io import UntrustedFile, load_checkpoint

REPO = Path(__file__).resolve().parents[2]
TWO_EPOCHS = ["SOLVER.EPOCHS", "2", "SOLVER.BATCH_SIZE", "16", "SOLVER.WARMUP_EPOCHS", "0", "LOG_PERIOD", "4",
              "NUM_THREADS", "1"]
REFUSED = r"asks for \S+ to be loaded, which no file lda_cls writes holds: refused, nothing in it was run"


class CreatesAFile:
    """Unpickling this calls open(path, "w"): the file appears if the loader runs pickled code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted(path, marker, **extra):
    torch.save({"model": CreatesAFile(marker), **extra}, path)
    assert not marker.exists()
    return path


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert main(["--output-dir", str(run), *TWO_EPOCHS, "SOLVER.STOP_EPOCH", "1"]) is None
    return run


def test_eval_only_refuses_a_crafted_weights_file_in_one_line(tmp_path):
    marker = tmp_path / "created_by_the_pickle"
    weights = crafted(tmp_path / "weights.pth", marker)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("LDA_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "lda_cls.train", "--eval-only", "--weights", str(weights),
                           "--output-dir", str(tmp_path / "eval")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and not marker.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {weights} asks for ")
    assert "refused, nothing in it was run" in lines[0]


def test_resume_refuses_a_crafted_checkpoint_and_writes_nothing(stopped_run, tmp_path):
    marker = tmp_path / "created_by_the_pickle"
    last = stopped_run / "last_checkpoint.pth"
    original = last.read_bytes()
    config = (stopped_run / "config.yaml").read_bytes()
    try:
        crafted(last, marker, cfg=get_cfg().dump())
        with pytest.raises(UntrustedFile, match=rf"^{last} {REFUSED}"):
            main(["--output-dir", str(stopped_run), "--resume", *TWO_EPOCHS])
    finally:
        last.write_bytes(original)
    assert not marker.exists() and (stopped_run / "config.yaml").read_bytes() == config


def test_stage1_weights_analysis_and_dataset_cache_refuse_crafted_files(stopped_run, tmp_path, image_tree):
    from lda_cls import build_dataset
    from lda_cls.analysis.collect import load_model
    from lda_cls.methods.decoupling import load_stage1_weights
    from lda_cls import build_model

    marker = tmp_path / "created_by_the_pickle"
    bad = crafted(tmp_path / "bad.pth", marker)
    cfg = get_cfg()
    with pytest.raises(UntrustedFile, match=rf"^{bad} {REFUSED}"):
        load_stage1_weights(build_model(cfg, 10), str(bad), keep_classifier=False)
    with pytest.raises(UntrustedFile, match=rf"^{bad} {REFUSED}"):
        load_model(cfg, 10, str(bad), torch.device("cpu"))
    # The dataset cache: a planted file under the name the CIFAR image-folder cache takes.
    cfg.DATASET.NAME, cfg.DATASET.ROOT, cfg.DATASET.CACHE_DIR = "cifar10_lt", str(image_tree), str(tmp_path / "c")
    build_dataset(cfg, "test")
    (cache,) = (tmp_path / "c").iterdir()
    crafted(cache, marker)
    with pytest.raises(UntrustedFile, match=rf"^{cache} {REFUSED}"):
        build_dataset(cfg, "test")
    assert not marker.exists()


def test_checkpoints_hold_nothing_but_weights_only_types(stopped_run):
    for name in ("last_checkpoint.pth", "model_best.pth"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(str(stopped_run / name)) == []
    state = torch.load(stopped_run / "last_checkpoint.pth", weights_only=True)
    assert state["rng"][0]["numpy"]["keys"].dtype == torch.int64 and state["rng"][0]["numpy"]["kind"] == "MT19937"


def test_a_checkpoint_with_numpys_rng_array_still_resumes(tmp_path):
    """Checkpoints written before the tensor form held np.random.get_state()'s array: the numpy globals that
    rebuild it are the only ones allowed on top."""
    run = tmp_path / "run"
    main(["--output-dir", str(run), *TWO_EPOCHS, "SOLVER.STOP_EPOCH", "1"])
    last = run / "last_checkpoint.pth"
    state = torch.load(last, weights_only=True)
    stored = state["rng"][0]["numpy"]
    state["rng"][0]["numpy"] = (stored["kind"], stored["keys"].numpy().astype(np.uint32), stored["pos"],
                                stored["has_gauss"], stored["cached_gaussian"])
    torch.save(state, last)
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(str(last))
    assert np.array_equal(load_checkpoint(str(last))["rng"][0]["numpy"][1], state["rng"][0]["numpy"][1])
    assert main(["--output-dir", str(run), "--resume", *TWO_EPOCHS])["selected_epoch"] in (1, 2)


def test_a_damaged_file_is_named(tmp_path):
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=rf"^cannot read checkpoint {damaged} \(corrupt or not a torch file\): "):
        load_checkpoint(str(damaged))
