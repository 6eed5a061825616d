"""--resume continues a run only with the settings it was started with (lda_cls/run_dir.py)."""
import json
import shutil

import pytest
import torch

from lda_cls import get_cfg
from lda_cls.run_dir import RESUMABLE_KEYS, ResumeRefused, config_changes
from lda_cls.train import main

# Two short epochs of digits_lt (as in test_cls_train.py), stopped after the first one.
TWO_EPOCHS = ["SOLVER.EPOCHS", "2", "SOLVER.BATCH_SIZE", "16", "SOLVER.WARMUP_EPOCHS", "0", "LOG_PERIOD", "4",
              "NUM_THREADS", "1"]
DIR_FILES = ("config.yaml", "log.txt", "metrics.jsonl", "last_checkpoint.pth", "model_best.pth")


def stopped_run(directory, *args):
    assert main(["--output-dir", str(directory), *args, *TWO_EPOCHS, "SOLVER.STOP_EPOCH", "1"]) is None
    return directory


def snapshot(directory):
    return {name: (directory / name).read_bytes() for name in DIR_FILES}


@pytest.fixture(scope="module")
def lda_stopped(tmp_path_factory):
    return stopped_run(tmp_path_factory.mktemp("lda_stopped"))


@pytest.mark.parametrize("options, overrides, change", [
    ([], ["SOLVER.BASE_LR", "0.5"], "SOLVER.BASE_LR 0.05 -> 0.5"),
    ([], ["SOLVER.EPOCHS", "4"], "SOLVER.EPOCHS 2 -> 4"),
    ([], ["SOLVER.BATCH_SIZE", "32"], "SOLVER.BATCH_SIZE 16 -> 32"),
    ([], ["DATASET.IMBALANCE_RATIO", "20"], "DATASET.IMBALANCE_RATIO 10.0 -> 20.0"),
    (["--method", "lda_fixed_alpha"], [], "METHOD 'lda' -> 'lda_fixed_alpha'"),
])
def test_resume_refuses_a_changed_config_naming_the_keys_and_writes_nothing(lda_stopped, options, overrides, change):
    before = snapshot(lda_stopped)
    with pytest.raises(ResumeRefused) as refused:
        main(["--output-dir", str(lda_stopped), "--resume", *options, *TWO_EPOCHS, *overrides])
    message = str(refused.value)
    assert message.startswith(f"--resume: {lda_stopped / 'last_checkpoint.pth'} does not fit this config "
                              f"(changed since it was written: ")
    assert change in message and "\n" not in message
    assert f"only {', '.join(RESUMABLE_KEYS)} may change on resume" in message
    assert snapshot(lda_stopped) == before  # config.yaml, log.txt, metrics.jsonl as they were


def test_lda_to_lda_fixed_alpha_names_every_changed_key(lda_stopped):
    with pytest.raises(ResumeRefused, match=r"changed since it was written: LDA.FIXED_ALPHA -1.0 -> 1.0, "
                                            r"METHOD 'lda' -> 'lda_fixed_alpha'\)"):
        main(["--output-dir", str(lda_stopped), "--resume", "--method", "lda_fixed_alpha", *TWO_EPOCHS])


def test_ce_to_focal_is_refused(tmp_path):
    run = stopped_run(tmp_path / "ce", "--method", "ce")
    with pytest.raises(ResumeRefused, match=r"METHOD 'ce' -> 'focal'"):
        main(["--output-dir", str(run), "--resume", "--method", "focal", *TWO_EPOCHS])


def test_a_two_stage_run_refuses_other_stage1_weights(lda_stopped, tmp_path):
    stage1 = str(lda_stopped / "model_best.pth")
    run = stopped_run(tmp_path / "crt", "--method", "crt", "--weights", stage1)
    other = tmp_path / "other_stage1.pth"
    shutil.copyfile(stage1, other)
    with pytest.raises(ResumeRefused, match=rf"DECOUPLE.STAGE1_WEIGHTS '{stage1}' -> '{other}'"):
        main(["--output-dir", str(run), "--resume", "--method", "crt", "--weights", str(other), *TWO_EPOCHS])
    with pytest.raises(ResumeRefused, match=rf"DECOUPLE.STAGE1_WEIGHTS '{stage1}' -> ''"):
        main(["--output-dir", str(run), "--resume", "--method", "crt", *TWO_EPOCHS])


def test_the_resumable_keys_may_change_and_the_run_completes(tmp_path):
    run = stopped_run(tmp_path / "run")
    results = main(["--output-dir", str(run), "--resume", *TWO_EPOCHS, "LOG_PERIOD", "8", "TEST.EVAL_PERIOD", "2",
                    "CHECKPOINT_PERIOD", "2", "NUM_THREADS", "1"])
    assert results["selected_epoch"] in (1, 2) and "world_size_changes" not in results
    state = torch.load(run / "last_checkpoint.pth", weights_only=False)
    assert state["epoch"] == 2 and state["world_size"] == 1 and state["world_size_changes"] == []
    # The train records after the resume are logged every 8 steps: the new LOG_PERIOD took effect.
    iters = [json.loads(line)["iter"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "train"]
    assert iters[-4:] == [32, 40, 48, 52]


def test_a_world_size_change_is_refused_unless_allowed_and_then_recorded(tmp_path):
    run = stopped_run(tmp_path / "run")
    path = run / "last_checkpoint.pth"
    state = torch.load(path, weights_only=False)
    state["world_size"] = 2  # as if two processes had written it
    torch.save(state, path)
    before = snapshot(run)
    with pytest.raises(ResumeRefused, match=rf"^--resume: {path} was written by 2 process\(es\), this run has 1: "
                                            r".*pass --allow-world-size-change to continue anyway"):
        main(["--output-dir", str(run), "--resume", *TWO_EPOCHS])
    assert snapshot(run) == before
    with pytest.raises(SystemExit):  # the flag means nothing without --resume
        main(["--output-dir", str(tmp_path / "fresh"), "--allow-world-size-change", *TWO_EPOCHS])
    results = main(["--output-dir", str(run), "--resume", "--allow-world-size-change", *TWO_EPOCHS])
    assert results["world_size_changes"] == [{"epoch": 1, "from": 2, "to": 1}]
    assert json.loads((run / "results.json").read_text())["world_size_changes"] == results["world_size_changes"]
    assert torch.load(path, weights_only=False)["world_size_changes"] == results["world_size_changes"]


def test_a_key_added_since_the_checkpoint_counts_as_its_default():
    saved = get_cfg()
    del saved.LDA["DIVERGENCE_FEATURES"]  # as if written before the key existed
    now = get_cfg()
    assert config_changes(saved.dump(), now) == []
    now.LDA.DIVERGENCE_FEATURES = "backbone"
    assert config_changes(saved.dump(), now) == ["LDA.DIVERGENCE_FEATURES 'projection' -> 'backbone'"]
    now.SOLVER.STOP_EPOCH, now.OUTPUT_DIR = 3, "elsewhere"  # resumable: never reported
    assert config_changes(saved.dump(), now) == ["LDA.DIVERGENCE_FEATURES 'projection' -> 'backbone'"]


def test_a_checkpoint_without_a_saved_config_is_refused(tmp_path):
    run = stopped_run(tmp_path / "run")
    state = torch.load(run / "last_checkpoint.pth", weights_only=False)
    del state["cfg"]
    torch.save(state, run / "last_checkpoint.pth")
    with pytest.raises(ResumeRefused, match="holds no saved config to compare with"):
        main(["--output-dir", str(run), "--resume", *TWO_EPOCHS])


def test_auto_resume_starts_a_new_dir_continues_a_stopped_run_and_restarts_one_killed_before_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert main(["--output-dir", str(run), "--auto-resume", *TWO_EPOCHS, "SOLVER.STOP_EPOCH", "1"]) is None
    assert torch.load(run / "last_checkpoint.pth", weights_only=False)["epoch"] == 1
    results = main(["--output-dir", str(run), "--auto-resume", *TWO_EPOCHS])  # the same command again
    assert torch.load(run / "last_checkpoint.pth", weights_only=False)["epoch"] == 2
    assert "resumed from" in (run / "log.txt").read_text() and results["selected_epoch"] in (1, 2)
    with pytest.raises(SystemExit):  # a finished run without its checkpoint is not replaced
        (run / "last_checkpoint.pth").unlink()
        main(["--output-dir", str(run), "--auto-resume", *TWO_EPOCHS])
    assert (run / "results.json").exists()
    killed = tmp_path / "killed"  # killed during its first epoch: a metrics.jsonl, no checkpoint
    killed.mkdir()
    (killed / "metrics.jsonl").write_text('{"type": "train", "epoch": 1, "iter": 4}\n{"type": "tr')
    assert main(["--output-dir", str(killed), "--auto-resume", *TWO_EPOCHS, "SOLVER.STOP_EPOCH", "1"]) is None
    assert '"type": "tr\n' not in (killed / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit):
        main(["--output-dir", str(run), "--auto-resume", "--resume", *TWO_EPOCHS])
