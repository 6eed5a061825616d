"""cRT (Kang et al., ICLR 2020) for detection: the class-balanced sampler, and stage 2 end to end."""
import itertools
import os

import numpy as np
import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from scipy import stats

from lda_det import model_zoo, samplers
from lda_det.samplers import ClassBalancedTrainingSampler

from .conftest import TINY_OPTS, load_train_net, tiny_cfg, tiny_opts

CLS_SCORE = "roi_heads.box_predictor.cls_score"

# 100 images: class 0 (frequent) in images 0-89; class 1 in 10-19 and 90-94 (15 images), class 2 in 5-7,
# class 3 in image 95 alone; 96-99 have no annotation. Class 4 has no image.
IMAGE_CLASSES = [[0] for _ in range(90)] + [[1]] * 5 + [[3]] + [[]] * 4
for _image in range(10, 20):
    IMAGE_CLASSES[_image] = [0, 1, 0]  # repeated ids count once
for _image in range(5, 8):
    IMAGE_CLASSES[_image] = [2, 0]


def expected_image_probabilities():
    """P(image) = sum over its classes c of (1 / #classes with images) x (1 / #images of c), by hand."""
    images_of = {0: 90, 1: 15, 2: 3, 3: 1}
    probabilities = np.zeros(len(IMAGE_CLASSES))
    for image, classes in enumerate(IMAGE_CLASSES):
        probabilities[image] = sum(1 / 4 * 1 / images_of[c] for c in set(classes))
    assert probabilities.sum() == pytest.approx(1.0)
    return probabilities


def take(sampler, num):
    return list(itertools.islice(iter(sampler), num))


def test_sampler_draws_classes_uniformly_then_images_uniformly():
    num = 40000
    sampler = ClassBalancedTrainingSampler(IMAGE_CLASSES, seed=3)
    assert sampler.num_classes == 4  # class 4 has no image: never chosen
    classes, images = sampler.draw(num, torch.Generator().manual_seed(0))
    # The drawn class: uniform over the 4 classes with images (chi-square, p > 1e-3 at this fixed seed).
    class_counts = np.bincount(classes.numpy(), minlength=5)
    assert class_counts[4] == 0
    assert stats.chisquare(class_counts[:4]).pvalue > 1e-3, class_counts
    # Each draw's image contains its class.
    assert all(int(c) in IMAGE_CLASSES[int(i)] for c, i in zip(classes[:2000], images[:2000]))
    # The stream's images follow the hand-computed law; images without annotations never come.
    counts = np.bincount(take(sampler, num), minlength=len(IMAGE_CLASSES))
    expected = expected_image_probabilities()
    assert counts[expected == 0].sum() == 0
    drawn = expected > 0
    assert stats.chisquare(counts[drawn], expected[drawn] * num).pvalue > 1e-3
    # Class 3's single image comes ~1/4 of the time (uniform image sampling: 1/96), class 0 far less than 90/96.
    assert counts[95] / num == pytest.approx(0.25, abs=4 * np.sqrt(0.25 * 0.75 / num))
    # The test can fail: uniform image sampling is rejected by the same statistic.
    uniform = np.bincount(np.random.RandomState(0).randint(0, 96, num), minlength=len(IMAGE_CLASSES))
    assert stats.chisquare(uniform[drawn], expected[drawn] * num).pvalue < 1e-6


def test_sampler_is_deterministic_given_the_seed():
    a, b = (take(ClassBalancedTrainingSampler(IMAGE_CLASSES, seed=7), 9000) for _ in range(2))
    assert a == b  # across chunks (CHUNK = 4096) too
    assert take(ClassBalancedTrainingSampler(IMAGE_CLASSES, seed=8), 9000) != a


def test_two_ranks_draw_disjoint_shards_of_one_stream(monkeypatch):
    """Like detectron2's TrainingSampler: rank r of W takes positions r, r + W, ... of the global stream."""
    single = take(ClassBalancedTrainingSampler(IMAGE_CLASSES, seed=5), 1000)
    monkeypatch.setattr(samplers.comm, "get_world_size", lambda: 2)
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(samplers.comm, "get_rank", lambda rank=rank: rank)
        shards.append(take(ClassBalancedTrainingSampler(IMAGE_CLASSES, seed=5), 500))
    assert shards[0] == single[0::2] and shards[1] == single[1::2]
    assert shards[0] != shards[1]


def test_sampler_from_config_reads_contiguous_category_ids():
    dicts = [{"annotations": [{"category_id": c} for c in classes]} for classes in IMAGE_CLASSES]
    cfg = tiny_cfg(opts=["SEED", 11])
    built = ClassBalancedTrainingSampler.from_config(cfg, dicts)
    assert take(built, 300) == take(ClassBalancedTrainingSampler(IMAGE_CLASSES, seed=11), 300)


def test_lvis_crt_config():
    cfg = model_zoo.get_config("LVIS-LDA/crt_mask_rcnn_R_50_FPN_1x.yaml")
    baseline = model_zoo.get_config("LVIS-LDA/baseline_mask_rcnn_R_50_FPN_1x.yaml")
    assert cfg.MODEL.WEIGHTS == "output/baseline_mask_rcnn_R_50_FPN_1x/model_final.pth"
    assert cfg.MODEL.TRAINABLE_PARAMETERS == cfg.MODEL.REINITIALIZED_PARAMETERS == (CLS_SCORE,)
    assert cfg.DATALOADER.SAMPLER_TRAIN == "ClassBalancedTrainingSampler"
    assert (cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS), cfg.SOLVER.WARMUP_ITERS) == (75000, (50000, 70000), 500)
    assert cfg.SOLVER.BASE_LR == baseline.SOLVER.BASE_LR == 0.02 and cfg.SOLVER.IMS_PER_BATCH == 16
    assert cfg.INPUT == baseline.INPUT and cfg.MODEL.ROI_HEADS == baseline.MODEL.ROI_HEADS
    # Builds the 1203-class model with only the classifier trainable, without LVIS on disk.
    cfg.MODEL.DEVICE = "cpu"
    model = load_train_net().Trainer.build_model(cfg)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {CLS_SCORE + ".weight", CLS_SCORE + ".bias"}
    assert model.roi_heads.box_predictor.cls_score.out_features == 1204


def test_prefix_matching_nothing_is_an_error(synthetic_root):
    train_net = load_train_net()
    for key in ("MODEL.TRAINABLE_PARAMETERS", "MODEL.REINITIALIZED_PARAMETERS"):
        cfg = tiny_cfg(head="StandardROIHeads", opts=[key, ("roi_heads.box_predictor.cls_scores",)])
        with pytest.raises(ValueError, match=key + r": prefix 'roi_heads.box_predictor.cls_scores' matches no"):
            trainer = train_net.Trainer(cfg)
            trainer.resume_or_load(resume=False)


def test_crt_stage_2_retrains_only_the_classifier(synthetic_root, tmp_path):
    train_net = load_train_net()
    parser = train_net.default_argument_parser()
    no_eval = ["DATASETS.TEST", "()"]  # the training runs skip the final LVIS evaluation; --eval-only does it

    # Stage 1: the plain baseline on the demo (the demo backbone has BatchNorm: its statistics must stay).
    stage1 = tmp_path / "stage1"
    args = parser.parse_args(["--config-file", model_zoo.get_config_file("LVIS-LDA/synthetic_lt_demo.yaml")]
                             + tiny_opts(stage1, head="StandardROIHeads") + no_eval)
    trainer = train_net.Trainer(train_net.setup(args))
    trainer.resume_or_load(resume=False)
    trainer.train()
    stage1_weights = str(stage1 / "model_final.pth")
    before = torch.load(stage1_weights, map_location="cpu")["model"]

    # Stage 2: synthetic_lt_crt.yaml from stage 1's model_final.pth, 2 iterations.
    crt_config = model_zoo.get_config_file("LVIS-LDA/synthetic_lt_crt.yaml")
    stage2 = tmp_path / "stage2"
    crt_opts = [str(o) for o in TINY_OPTS] + ["SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1,)", "OUTPUT_DIR", str(stage2),
                                              "MODEL.WEIGHTS", stage1_weights]
    cfg = train_net.setup(parser.parse_args(["--config-file", crt_config] + crt_opts + no_eval))
    assert cfg.DATALOADER.SAMPLER_TRAIN == "ClassBalancedTrainingSampler"
    trainer = train_net.Trainer(cfg)
    # detectron2's loader: AspectRatioGroupedDataset(DataLoader(ToIterableDataset(mapped dicts, sampler))).
    assert isinstance(trainer.data_loader.dataset.dataset.sampler, ClassBalancedTrainingSampler)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    head = trainer.model.roi_heads.box_predictor
    assert optimized == {id(head.cls_score.weight), id(head.cls_score.bias)}
    assert any(isinstance(m, FrozenBatchNorm2d) for m in trainer.model.backbone.modules())
    trainer.resume_or_load(resume=False)
    loaded = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    # Re-initialised: the classifier is not stage 1's; everything else is.
    assert not torch.equal(loaded[CLS_SCORE + ".weight"], before[CLS_SCORE + ".weight"])
    assert torch.count_nonzero(loaded[CLS_SCORE + ".bias"]) == 0  # FastRCNNOutputLayers' initialisation
    trainer.train()
    after = torch.load(str(stage2 / "model_final.pth"), map_location="cpu")["model"]
    assert set(after) == set(before)
    for key in before:
        if key.startswith(CLS_SCORE):
            assert not torch.equal(after[key], loaded[key]), f"{key} was not trained"
        else:
            assert torch.equal(after[key], before[key]), f"{key} changed in stage 2"

    # --eval-only on the stage-2 model, from the command line's path.
    eval_args = parser.parse_args(["--config-file", crt_config, "--eval-only"] + crt_opts[:-4]
                                  + ["OUTPUT_DIR", str(tmp_path / "eval"),
                                     "MODEL.WEIGHTS", str(stage2 / "model_final.pth")])
    results = train_net.main(eval_args)
    assert {"AP", "APr", "APc", "APf"} <= set(results["bbox"]) and np.isfinite(results["bbox"]["AP"])
    assert os.path.isfile(tmp_path / "eval" / "inference" / "lvis_instances_results.json")
