"""The compared methods through `python -m lda_cls.train`: every registered name has its config and builds,
`--method` merges configs/cls/methods/<name>.yaml, DRW switches inside a run, and a two-stage run on digits_lt."""
import json

import pytest
import torch

from lda_cls import build_model
from lda_cls.hooks import ClassWeightSchedule
from lda_cls.methods import METHODS, build_method
from lda_cls.methods.class_weights import class_weights
from lda_cls.train import METHOD_CONFIG_DIR, build_parser, main, setup_cfg
from tests.helpers import load_script

FAST = ["SOLVER.BATCH_SIZE", "16", "SOLVER.WARMUP_EPOCHS", "0", "LOG_PERIOD", "8", "NUM_THREADS", "1"]


def cfg_for(*argv):
    return setup_cfg(build_parser().parse_args(list(argv)))


def test_every_registered_method_has_a_config_and_trains_one_step():
    configs = {path.stem for path in METHOD_CONFIG_DIR.glob("*.yaml")}
    assert configs == set(METHODS)
    counts = [40, 20, 10, 5, 5, 4, 3, 3, 2, 2]
    for name in sorted(METHODS):
        cfg = cfg_for("--method", name)
        assert cfg.METHOD == name
        torch.manual_seed(0)
        model = build_model(cfg, 10)
        criterion = build_method(cfg, counts).build_criterion()
        outputs = model(torch.randn(8, 1, 8, 8))
        loss = criterion(outputs, torch.arange(8) % 10)["loss"]
        assert torch.isfinite(loss), name
        if any(p.requires_grad for p in model.parameters()) and loss.requires_grad:
            loss.backward()


def test_method_config_merges_over_the_dataset_config():
    cfg = cfg_for("--dataset", "cifar10_lt", "--method", "ldam_drw")
    assert (cfg.METHOD, cfg.MODEL.CLASSIFIER, cfg.MODEL.BACKBONE) == ("ldam_drw", "cosine", "resnet32_cifar")
    assert (cfg.REWEIGHT.TYPE, cfg.REWEIGHT.START_EPOCH, cfg.SOLVER.EPOCHS) == ("effective", 160, 200)
    cfg = cfg_for("--dataset", "cifar100_lt", "--method", "crt", "--weights", "stage1.pth")
    assert cfg.DECOUPLE.STAGE1_WEIGHTS == "stage1.pth" and cfg.SAMPLER.NAME == "class_balanced"
    assert cfg.SOLVER.EPOCHS == 10 and cfg.DATASET.NAME == "cifar100_lt"
    assert cfg_for("--method", "ce", "--eval-only", "--weights", "x.pth").DECOUPLE.STAGE1_WEIGHTS == ""
    with pytest.raises(ValueError, match="no_such_method.yaml; methods with a config: balanced_softmax"):
        cfg_for("--method", "no_such_method")


def test_drw_switches_inside_a_run(tmp_path, monkeypatch):
    seen = {}
    original = ClassWeightSchedule.before_epoch

    def record(self, epoch):
        original(self, epoch)
        seen[epoch] = self.criterion.class_weights.clone()

    monkeypatch.setattr(ClassWeightSchedule, "before_epoch", record)
    results = main(["--method", "ce_drw", "--output-dir", str(tmp_path), "SOLVER.EPOCHS", "2",
                    "REWEIGHT.START_EPOCH", "1", *FAST])
    counts = json.loads((tmp_path / "results.json").read_text())
    assert counts["method"] == "ce_drw" and results["balanced"]["top1"] > 20
    assert torch.equal(seen[0], torch.ones(10))
    from lda_cls import build_dataset
    from lda_cls.data import class_counts_of

    train, num_classes = build_dataset(cfg_for(), "train", load_images=False)
    assert torch.allclose(seen[1], class_weights("effective", class_counts_of(train, num_classes), 0.9999))


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    output = tmp_path_factory.mktemp("stage1_ce")
    main(["--method", "ce", "--output-dir", str(output), "SOLVER.EPOCHS", "2", *FAST])
    return output / "model_best.pth"


def state_of(path):
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state.get("model", state)


def test_two_stage_crt_keeps_the_backbone_and_retrains_the_classifier(stage1, tmp_path):
    results = main(["--method", "crt", "--weights", str(stage1), "--output-dir", str(tmp_path),
                    "SOLVER.EPOCHS", "2", *FAST])
    before, after = state_of(stage1), state_of(tmp_path / "model_best.pth")
    backbone = [key for key in before if key.startswith("backbone.")]
    statistics = [key for key in backbone if key.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    weights = [key for key in backbone if key not in statistics]
    assert weights and all(torch.equal(before[key], after[key]) for key in weights)
    # DECOUPLE.BACKBONE_BN train (Kang et al.'s mode): the frozen BatchNorms re-estimate their statistics.
    assert statistics and not all(torch.equal(before[key], after[key]) for key in statistics)
    assert not torch.equal(before["head.balanced.weight"], after["head.balanced.weight"])
    assert results["method"] == "crt" and results["balanced"]["top1"] > 30  # chance is 10
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["balanced"] == results["balanced"]


def test_two_stage_lws_ncm_and_posthoc_la_start_from_stage1(stage1, tmp_path):
    lws = main(["--method", "lws", "--weights", str(stage1), "--output-dir", str(tmp_path / "lws"),
                "SOLVER.EPOCHS", "1", *FAST])
    before, after = state_of(stage1), state_of(tmp_path / "lws" / "model_best.pth")
    assert torch.equal(before["head.balanced.weight"], after["head.balanced.weight"])
    assert not torch.equal(after["head.balanced.scales"], torch.ones(10))  # only f_y trained
    assert lws["balanced"]["top1"] > 30
    for method in ("ncm", "posthoc_la"):
        result = main(["--method", method, "--weights", str(stage1), "--output-dir", str(tmp_path / method), *FAST])
        reported = torch.load(tmp_path / method / "model_best.pth", map_location="cpu", weights_only=False)
        assert reported["epoch"] == 0 and result["balanced"]["top1"] > 30, method  # nothing trained
    assert (state_of(tmp_path / "ncm" / "model_best.pth")["head.balanced.means"].abs().sum() > 0)
    tau = main(["--method", "tau_norm", "--weights", str(stage1), "--output-dir", str(tmp_path / "tau"),
                "DECOUPLE.TAU_GRID", "[0.5]", *FAST])
    assert state_of(tmp_path / "tau" / "model_best.pth")["head.balanced.tau"].item() == 0.5
    assert tau["balanced"]["top1"] > 30


def test_two_stage_methods_need_stage1_weights(tmp_path):
    with pytest.raises(ValueError, match="stage-1 checkpoint"):
        main(["--method", "crt", "--output-dir", str(tmp_path / "a"), *FAST])
    with pytest.raises(ValueError, match="one-stage"):
        main(["--method", "ce", "--weights", str(tmp_path / "x.pth"), "--output-dir", str(tmp_path / "b"), *FAST])


def test_analyze_compare_shows_each_methods_effective_classifier(stage1, tmp_path):
    from lda_cls.analyze import main as analyze

    for method, epochs in (("lws", "1"), ("ncm", "0")):
        main(["--method", method, "--weights", str(stage1), "--output-dir", str(tmp_path / method),
              "SOLVER.EPOCHS", epochs, *FAST])
    analyze([str(tmp_path / "lws"), "--compare", str(stage1.parent), str(tmp_path / "ncm"),
                      "--out", str(tmp_path / "analysis"), "--no-tsne"])
    norms = json.loads((tmp_path / "analysis" / "analysis.json").read_text())["quantities"]["weight_norms"]
    lws_state = state_of(tmp_path / "lws" / "model_best.pth")
    expected = (lws_state["head.balanced.weight"].norm(dim=1) * lws_state["head.balanced.scales"].abs()).tolist()
    assert norms["lws: lws classifier"] == pytest.approx(expected, rel=1e-5)  # f_y ||w_y||, not ||w_y||
    ncm_means = state_of(tmp_path / "ncm" / "model_best.pth")["head.balanced.means"]
    # The class means of the centred, normalised features (Kang et al.'s "cl2n"): norms below 1, not re-normalised.
    assert norms["ncm: ncm classifier"] == pytest.approx(ncm_means.norm(dim=1).tolist(), rel=1e-5)
    assert max(norms["ncm: ncm classifier"]) < 1.0
    assert any(key.endswith("CE classifier") for key in norms)
    assert (tmp_path / "analysis" / "per_class_accuracy.png").is_file()


def test_the_benchmark_runs_every_registered_method():
    bench = load_script("benchmarks/bench_methods.py", "bench_methods")
    order = bench.run_order(tuple(METHODS))  # what --methods all runs
    assert set(order) == set(METHODS)
    two_stage = {"crt", "lws", "tau_norm", "ncm", "posthoc_la"}
    assert {m for m in METHODS if bench.is_two_stage(m)} == two_stage
    assert set(order[-len(two_stage):]) == two_stage  # after their stage-1 CE
    assert not bench.trains("tau_norm") and bench.trains("crt") and bench.trains("lda_la")
    assert bench.deferred_epoch(200) == 160 and bench.deferred_epoch(12) == 10 and bench.deferred_epoch(1) == 0
    # The DRW switch the shared schedule moves: read from each method's YAML, not from its name.
    assert {m for m in METHODS if bench.defers_reweighting(m)} == {"ce_drw", "ldam_drw"}
