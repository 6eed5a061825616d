"""The benchmark configs carry the paper's settings, and the config reaches the loss and the schedule."""
import pytest
import torch

from lda_cls.methods import build_method
from lda_cls.methods.ce import CrossEntropyLoss
from lda_cls.methods.lda import LDACriterion
from lda_cls.solver import build_optimizer, build_scheduler
from lda_cls.train import build_parser, setup_cfg
from lda_core import LDALoss


def cfg_for(*argv):
    return setup_cfg(build_parser().parse_args(list(argv)))


def lr_at(cfg, epoch, iters_per_epoch=10):
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, iters_per_epoch)
    scheduler.step_update(int(round(epoch * iters_per_epoch)))
    return optimizer.param_groups[0]["lr"]


def test_cifar_lt_schedule_matches_the_official_config():
    for dataset in ("cifar10_lt", "cifar100_lt"):
        cfg = cfg_for("--dataset", dataset)
        assert cfg.MODEL.BACKBONE == "resnet32_cifar" and cfg.SOLVER.EPOCHS == 200
        assert cfg.SOLVER.BATCH_SIZE == 128 and cfg.SOLVER.WEIGHT_DECAY == 2e-4
        assert (cfg.LDA.GAMMA, cfg.LDA.BETA, cfg.DATASET.IMBALANCE_RATIO) == (1.0, 0.5, 100.0)
        assert lr_at(cfg, 0) == 0.0  # linear warm-up from 0 ...
        assert lr_at(cfg, 2.5) == pytest.approx(0.05)
        assert lr_at(cfg, 5) == pytest.approx(0.1)  # ... to 0.1 after 5 epochs
        assert lr_at(cfg, 159.5) == pytest.approx(0.1)  # (timm decays one update early: 1599 -> 1600)
        assert lr_at(cfg, 160) == pytest.approx(1e-3)  # x0.01 at 160
        assert lr_at(cfg, 180) == pytest.approx(1e-5)  # and again at 180


def test_imagenet_and_places_settings():
    cfg = cfg_for("--dataset", "imagenet_lt")
    assert (cfg.MODEL.BACKBONE, cfg.SOLVER.EPOCHS, cfg.SOLVER.BATCH_SIZE) == ("resnext50_32x4d", 90, 256)
    assert cfg.LDA.GAMMA == 2.0 and cfg.SOLVER.SCHEDULER == "cosine" and cfg.SOLVER.WARMUP_EPOCHS == 5
    assert lr_at(cfg, 5) == pytest.approx(0.2 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 5 / 90)).item()))
    assert lr_at(cfg, 89.99) < 1e-5
    cfg = cfg_for("--dataset", "places_lt")
    assert (cfg.MODEL.BACKBONE, cfg.MODEL.FREEZE, cfg.LDA.GAMMA, cfg.LDA.BETA) == \
        ("resnet152", "all_but_last_block", 0.6, 0.5)
    assert cfg.MODEL.PRETRAINED_FILE and cfg.DATASET.VAL_SPLIT_FILE.endswith("Places_LT_val.txt")
    assert cfg.MODEL.FROZEN_BN == "train"  # the official trainer's batch statistics


def test_lda_keys_reach_the_loss():
    cfg = cfg_for("LDA.WINDOW", "7", "LDA.GAMMA", "1.5", "LDA.BETA", "0.25", "LDA.MARGIN", "0.5",
                  "LDA.BALANCED_FACTOR", "3.0", "LDA.WEIGHTED_INTER", "True", "LDA.FIXED_ALPHA", "0.3")
    criterion = build_method(cfg, [30, 20, 10]).build_criterion()
    assert isinstance(criterion, LDACriterion)
    loss = criterion.lda_loss
    assert loss.balance.window == 7 and loss.balance.gamma == 1.5 and loss.balance.fixed_alpha == 0.3
    assert (loss.beta, loss.margin, loss.balanced_factor, loss.weighted_inter) == (0.25, 0.5, 3.0, True)
    torch.manual_seed(0)
    outputs = {"unbalanced_logits": torch.randn(6, 3), "logits": torch.randn(6, 3), "projection": torch.randn(6, 4)}
    targets = torch.tensor([0, 0, 1, 2, 1, 0])
    direct = LDALoss([30, 20, 10], gamma=1.5, beta=0.25, margin=0.5, window=7, balanced_factor=3.0,
                     weighted_inter=True, fixed_alpha=0.3)
    expected = direct(outputs["unbalanced_logits"], outputs["logits"], targets, features=outputs["projection"])
    assert torch.allclose(criterion(outputs, targets)["loss"], expected["loss"])
    ce = build_method(cfg_for("--method", "ce"), [30, 20, 10]).build_criterion()
    assert isinstance(ce, CrossEntropyLoss)
    assert torch.allclose(ce(outputs, targets)["loss"], torch.nn.functional.cross_entropy(outputs["logits"], targets))


def test_every_key_has_a_comment():
    import inspect

    from lda_cls import config

    for line in inspect.getsource(config.add_lda_cls_config).splitlines():
        if "cfg." in line and "=" in line and "CN()" not in line:
            assert "#" in line, f"config key without a comment: {line.strip()}"


@pytest.mark.parametrize("dataset", ["cifar10_lt", "cifar100_lt", "imagenet_lt", "places_lt", "imagefolder_lt"])
def test_benchmark_configs_use_nesterov_sgd_as_the_official_trainer(dataset):
    cfg = cfg_for("--dataset", dataset)
    assert cfg.SOLVER.NESTEROV is True and cfg.SOLVER.MOMENTUM == 0.9
    model = torch.nn.Linear(2, 2, bias=False)
    optimizer = build_optimizer(cfg, model)
    assert optimizer.param_groups[0]["nesterov"] is True
    # One step by hand from w = 1 with gradient 1: g = 1 + wd * w, the momentum buffer b = g, and
    # Nesterov moves by lr (g + momentum b) = lr g (1 + momentum); plain momentum would move by lr g.
    with torch.no_grad():
        model.weight.fill_(1.0)
    optimizer.param_groups[0]["lr"] = 0.1
    model.weight.grad = torch.ones_like(model.weight)
    optimizer.step()
    g = 1.0 + cfg.SOLVER.WEIGHT_DECAY
    assert torch.allclose(model.weight, torch.full_like(model.weight, 1.0 - 0.1 * g * (1 + 0.9)))


def test_official_code_variants_next_to_the_paper_configs():
    import re
    from pathlib import Path

    from lda_cls.train import CONFIG_DIR

    def official(name):
        return cfg_for("--config-file", str(CONFIG_DIR / f"{name}_official.yaml"))

    # The paper's text stays the default ...
    paper = {name: cfg_for("--dataset", name) for name in ("cifar100_lt", "places_lt", "imagenet_lt")}
    assert (paper["cifar100_lt"].LDA.GAMMA, paper["cifar100_lt"].MODEL.PROJECTION.ENABLED) == (1.0, True)
    assert (paper["places_lt"].LDA.GAMMA, paper["places_lt"].MODEL.PROJECTION.ENABLED) == (0.6, True)
    assert paper["imagenet_lt"].SOLVER.BASE_LR == 0.2
    # ... and the released configs are one --config-file away.
    cifar = official("cifar100_lt")
    assert cifar.DATASET.NAME == "cifar100_lt" and cifar.MODEL.BACKBONE == "resnet32_cifar"
    assert (cifar.LDA.GAMMA, cifar.MODEL.PROJECTION.ENABLED, cifar.DATASET.IMBALANCE_RATIO) == (2.0, False, 50.0)
    assert cifar.SOLVER.NESTEROV and lr_at(cifar, 0) == pytest.approx(0.1 / 3, rel=1e-5)
    assert lr_at(cifar, 160) == pytest.approx(1e-3)
    places = official("places_lt")
    assert (places.LDA.GAMMA, places.MODEL.PROJECTION.ENABLED, places.MODEL.FROZEN_BN) == (2.0, False, "train")
    assert places.MODEL.FREEZE == "all_but_last_block" and places.SOLVER.MIN_LR == 1e-4
    imagenet = official("imagenet_lt")
    assert (imagenet.SOLVER.BASE_LR, imagenet.LDA.GAMMA, imagenet.LDA.BETA) == (0.1, 2.0, 1.0)
    assert imagenet.MODEL.PROJECTION.ENABLED and imagenet.MODEL.ZERO_INIT_LAST is False
    assert lr_at(imagenet, 89.99) == pytest.approx(1e-4, abs=1e-6)
    # Every value they set names its source file in the official repository.
    for path in sorted(Path(CONFIG_DIR).glob("*_official.yaml")):
        for line in path.read_text().splitlines():
            if re.match(r"^\s+[A-Z_]+: \S", line):
                assert re.search(r"#.*(configs/\w+\.yaml|lib/[\w/]+\.py)", line), f"{path.name}: no source: {line}"
