"""End-to-end runs of `python -m lda_cls.train` on digits_lt (in-process, a few seconds each)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lda_cls import get_cfg
from lda_cls.train import main
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
# Two short epochs of the embedded default (26 steps of 16 images each), logged every 4 steps.
TWO_EPOCHS = ["SOLVER.EPOCHS", "2", "SOLVER.BATCH_SIZE", "16", "SOLVER.WARMUP_EPOCHS", "0", "LOG_PERIOD", "4",
              "NUM_THREADS", "1"]
TRAIN_KEYS = {"type", "epoch", "iter", "loss", "loss_unbalanced", "loss_balanced", "loss_intra", "loss_inter",
              "alpha", "delta_acc", "balanced_coefficient", "lr"}
SPLIT_KEYS = {"top1", "many", "medium", "few"}


def read_jsonl(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def lda_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("lda_run")
    results = main(["--output-dir", str(output), *TWO_EPOCHS])
    return output, results


def test_two_epoch_run_learns_and_writes_every_output(lda_run):
    output, results = lda_run
    for name in ("log.txt", "metrics.jsonl", "config.yaml", "last_checkpoint.pth", "model_best.pth",
                 "model_deploy.pth", "results.json"):
        assert (output / name).is_file(), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(output / "tensorboard"))
    saved = json.loads((output / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["dataset"] == "digits_lt" and saved["imbalance_ratio"] == 10.0
    assert set(saved["balanced"]) == SPLIT_KEYS and set(saved["unbalanced"]) == SPLIT_KEYS
    assert saved["num_train_images"] == 421 and saved["num_test_images"] == 500
    # Two epochs lift h well above chance (10%).
    assert saved["balanced"]["top1"] > 30

    records = read_jsonl(output / "metrics.jsonl")
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    assert train and all(set(r) == TRAIN_KEYS for r in train)
    assert [r["iter"] for r in train][:3] == [4, 8, 12]
    # alpha grows from 0 as h' pulls ahead of h (Eq. 6), so R_s(h') is the clean learning signal.
    assert train[-1]["loss_unbalanced"] < 0.6 * train[0]["loss_unbalanced"]
    assert train[-1]["loss"] < train[0]["loss"]
    assert train[0]["alpha"] < train[-1]["alpha"]
    assert train[-1]["alpha"] >= 0 and train[-1]["lr"] > 0
    # digits_lt has a validation split: it selects the weights, the test split is evaluated once, on them.
    assert [(r["epoch"], r["split"]) for r in evals] == [(1, "val"), (2, "val"), (saved["selected_epoch"], "test")]
    val_top1 = [r["balanced"]["top1"] for r in evals[:2]]
    assert saved["selected_epoch"] == 1 + val_top1.index(max(val_top1)) and saved["best_val_top1"] == max(val_top1)
    assert saved["model_selection"] == "best validation top-1 of h" and "test_selected" not in saved
    assert saved["balanced"] == evals[-1]["balanced"]
    assert set(evals[0]["balanced"]) == SPLIT_KEYS
    assert "epoch 2" in (output / "log.txt").read_text()

    resolved = get_cfg()
    resolved.merge_from_file(str(output / "config.yaml"))
    assert resolved.SOLVER.EPOCHS == 2 and resolved.OUTPUT_DIR == str(output)


def test_eval_only_reproduces_saved_figures(lda_run, tmp_path):
    output, results = lda_run
    again = main(["--eval-only", "--weights", str(output / "model_best.pth"), "--output-dir", str(tmp_path / "a")])
    assert again["balanced"] == results["balanced"] and again["unbalanced"] == results["unbalanced"]
    assert json.loads((tmp_path / "a" / "eval_results.json").read_text())["balanced"] == results["balanced"]
    deployed = main(["--eval-only", "--weights", str(output / "model_deploy.pth"), "--output-dir", str(tmp_path / "b")])
    assert deployed["balanced"] == results["balanced"] and deployed["unbalanced"] is None


def test_resume_equals_uninterrupted_training(lda_run, tmp_path):
    output, results = lda_run
    interrupted = tmp_path / "interrupted"
    assert main(["--output-dir", str(interrupted), *TWO_EPOCHS, "SOLVER.STOP_EPOCH", "1"]) is None
    state = torch.load(interrupted / "last_checkpoint.pth", weights_only=False)
    assert state["epoch"] == 1 and state["criterion"]["lda_loss.balance.num_updates"] == 26
    resumed = main(["--output-dir", str(interrupted), "--resume", *TWO_EPOCHS])
    assert resumed == results
    straight = torch.load(output / "last_checkpoint.pth", weights_only=False)
    again = torch.load(interrupted / "last_checkpoint.pth", weights_only=False)
    for part in ("model", "criterion"):
        for key, value in straight[part].items():
            assert torch.equal(value, again[part][key]), f"{part}.{key}"
    assert straight["optimizer"]["state"].keys() == again["optimizer"]["state"].keys()
    for key, value in straight["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], again["optimizer"]["state"][key]["momentum_buffer"])
    # The log of the resumed run continues where the first part stopped.
    iters = [r["iter"] for r in read_jsonl(interrupted / "metrics.jsonl") if r["type"] == "train"]
    assert iters == sorted(iters) and len(iters) == len(set(iters))


def test_without_a_validation_split_the_headline_is_the_final_epoch(tmp_path):
    """No model selection on test: the best test epoch is reported apart, labelled, never as the headline."""
    results = main(["--output-dir", str(tmp_path), *TWO_EPOCHS, "SOLVER.EPOCHS", "3",
                    "DATASET.DIGITS_VAL_PER_CLASS", "0"])
    evals = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "eval"]
    assert [(r["epoch"], r["split"]) for r in evals] == [(1, "test"), (2, "test"), (3, "test")]
    assert results["balanced"] == evals[-1]["balanced"] and results["unbalanced"] == evals[-1]["unbalanced"]
    assert results["selected_epoch"] == 3 and results["best_val_top1"] is None
    assert results["model_selection"] == "none: final epoch (no validation split)"
    test_top1 = [r["balanced"]["top1"] for r in evals]
    best = 1 + test_top1.index(max(test_top1))
    selected = results["test_selected"]
    assert selected["epoch"] == best and selected["balanced"] == evals[best - 1]["balanced"]
    assert "test split" in selected["note"]
    # model_best.pth holds the reported (final) weights: evaluating it reproduces the headline.
    assert torch.load(tmp_path / "model_best.pth", weights_only=False)["epoch"] == 3
    again = main(["--eval-only", "--weights", str(tmp_path / "model_best.pth"), "--output-dir", str(tmp_path / "e"),
                  "DATASET.DIGITS_VAL_PER_CLASS", "0"])
    assert again["balanced"] == results["balanced"]


def test_ce_baseline_trains_one_classifier(tmp_path):
    results = main(["--method", "ce", "--output-dir", str(tmp_path), *TWO_EPOCHS])
    assert results["method"] == "ce" and results["unbalanced"] is None and results["balanced"]["top1"] > 30
    train = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "train"]
    assert set(train[0]) == {"type", "epoch", "iter", "loss", "lr"}
    state = torch.load(tmp_path / "model_best.pth", weights_only=False)["model"]
    assert not any(k.startswith(("head.unbalanced", "head.projection")) for k in state)


def test_command_line_errors_name_the_problem(tmp_path, capsys):
    for argv, message in [
        (["SOLVER.NO_SUCH_KEY", "1"], "SOLVER.NO_SUCH_KEY"),
        (["SOLVER.EPOCHS"], "KEY VALUE pairs"),
        (["SOLVER.EPOCHS", "many"], "SOLVER.EPOCHS"),
        (["--eval-only"], "--eval-only needs --weights"),
        (["SOLVER.EPOCHS", "2", "--resume"], "option --resume comes after the KEY VALUE pairs: options go before"),
        (["--config-file", str(tmp_path / "nope.yaml")], "nope.yaml"),
    ]:
        with pytest.raises(SystemExit):
            main(["--output-dir", str(tmp_path), *argv])
        assert message in capsys.readouterr().err, argv
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("SOLVER:\n  LEARNING_RATE: 0.1\n")
    with pytest.raises(SystemExit):
        main(["--config-file", str(bad_yaml)])
    assert "SOLVER.LEARNING_RATE" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="last_checkpoint.pth"):
        main(["--output-dir", str(tmp_path / "empty"), "--resume", *TWO_EPOCHS])
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02not a checkpoint")
    with pytest.raises(ValueError, match=f"cannot read checkpoint {corrupt}"):
        main(["--eval-only", "--weights", str(corrupt), "--output-dir", str(tmp_path / "eval")])


def test_a_failed_resume_with_a_changed_config_keeps_config_yaml(tmp_path):
    main(["--output-dir", str(tmp_path), *TWO_EPOCHS, "SOLVER.STOP_EPOCH", "1"])
    config = (tmp_path / "config.yaml").read_bytes()
    with pytest.raises(ValueError, match="last_checkpoint.pth does not fit this config .*changed .*METHOD"):
        main(["--output-dir", str(tmp_path), "--resume", "--method", "ce", *TWO_EPOCHS])
    assert (tmp_path / "config.yaml").read_bytes() == config


def test_a_fresh_run_refuses_an_earlier_runs_output_dir_unless_told(lda_run, tmp_path, capsys):
    output, _ = lda_run
    before = {name: (output / name).read_bytes() for name in ("results.json", "metrics.jsonl", "model_best.pth")}
    with pytest.raises(SystemExit) as refused:
        main(["--output-dir", str(output), *TWO_EPOCHS])
    assert refused.value.code != 0
    message = capsys.readouterr().err
    assert str(output) in message and "already holds a run" in message
    assert "--resume" in message and "--overwrite" in message
    assert all((output / name).read_bytes() == data for name, data in before.items())
    with pytest.raises(SystemExit):
        main(["--output-dir", str(output), "--resume", "--overwrite", *TWO_EPOCHS])
    assert "pass one of them" in capsys.readouterr().err

    # --overwrite replaces the earlier run: metrics.jsonl holds the new run only.
    one_epoch = [*TWO_EPOCHS, "SOLVER.EPOCHS", "1"]
    main(["--output-dir", str(tmp_path), *one_epoch, "SEED", "1"])
    (tmp_path / "notes.txt").write_text("mine")
    again = main(["--output-dir", str(tmp_path), "--overwrite", *one_epoch])
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["iter"] for r in records if r["type"] == "train"] == [4, 8, 12, 16, 20, 24, 26]
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(again))
    assert len(os.listdir(tmp_path / "tensorboard")) == 1 and (tmp_path / "notes.txt").read_text() == "mine"
    assert "SEED: 0" in (tmp_path / "config.yaml").read_text()


def strict_jsonl(path):
    """Parse as strict JSON: a bare NaN / Infinity is an error, as in most non-Python parsers."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    with open(path) as handle:
        return [json.loads(line, parse_constant=refuse) for line in handle]


def test_a_diverged_run_stops_at_a_logging_step_with_json_null(tmp_path):
    from lda_cls.engine import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="non-finite loss at epoch 1.*No checkpoint was written"):
        main(["--output-dir", str(tmp_path), *TWO_EPOCHS, "SOLVER.BASE_LR", "1000"])
    train = [r for r in strict_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "train"]
    assert train[-1]["loss"] is None and all(r["loss"] is not None for r in train[:-1])
    assert train[-1]["iter"] < 26 and train[-1]["iter"] % 4 == 0  # the first logging step that saw it
    assert not (tmp_path / "last_checkpoint.pth").exists() and not (tmp_path / "results.json").exists()
    assert "non-finite loss" in (tmp_path / "log.txt").read_text()


def test_divergence_after_a_good_epoch_exits_non_zero_and_keeps_its_checkpoint(tmp_path):
    # Epoch 1 trains normally; from epoch 2 on the lr is 0.05 x 1e5 = 5000 and the loss overflows.
    cmd = [sys.executable, "-m", "lda_cls.train", "--output-dir", str(tmp_path), *TWO_EPOCHS,
           "SOLVER.SCHEDULER", "multistep", "SOLVER.MILESTONES", "[1]", "SOLVER.DECAY_RATE", "1e5"]
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "error: non-finite loss at epoch 2" in proc.stderr and "Traceback" not in proc.stderr
    assert "last_checkpoint.pth (epoch 1) is the last good checkpoint, kept" in proc.stderr
    state = torch.load(tmp_path / "last_checkpoint.pth", weights_only=False)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    records = strict_jsonl(tmp_path / "metrics.jsonl")
    assert records[-1]["type"] == "train" and records[-1]["epoch"] == 2 and records[-1]["loss"] is None
    assert not (tmp_path / "results.json").exists()


def test_make_demo_replaces_its_own_earlier_run():
    """`make demo` runs the default training in the same output dir every time: it passes --overwrite."""
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ndemo:")[1].split("\n\n")[0]
    assert "-m lda_cls.train --overwrite" in recipe


def test_float_keys_accept_integer_literals(tmp_path):
    from lda_cls.train import build_parser, setup_cfg

    cfg = setup_cfg(build_parser().parse_args(["--dataset", "cifar10_lt", "DATASET.IMBALANCE_RATIO", "50"]))
    assert cfg.DATASET.IMBALANCE_RATIO == 50.0 and cfg.SOLVER.MILESTONES == [160, 180]
    assert cfg.OUTPUT_DIR == os.path.join("output", "cifar10_lt_lda")


def test_two_process_gloo_ddp_run(tmp_path):
    """torchrun with 2 CPU processes: global batch 16 = 2 x 8, exact sharded evaluation."""
    output = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "lda_cls.train", "--output-dir", str(output), *TWO_EPOCHS]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert results["balanced"]["top1"] > 30
    # 421 images, 210 per rank, 8 per rank and step -> 26 steps per epoch, as with one process of 16.
    train = [r for r in read_jsonl(output / "metrics.jsonl") if r["type"] == "train"]
    assert train[-1]["iter"] == 52 and train[-1]["loss_unbalanced"] < 0.6 * train[0]["loss_unbalanced"]
    # Rank 0 alone writes; the sharded evaluation reproduces single-process evaluation of the same weights.
    single = main(["--eval-only", "--weights", str(output / "model_best.pth"), "--output-dir", str(tmp_path / "e")])
    assert single["balanced"] == results["balanced"]
