"""MODEL.LDA.* keys, the registries, and the configs of configs/LVIS-LDA/."""
import os
import re

import pytest
from detectron2.config import get_cfg
from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY, build_model

import lda_det
from lda_det import add_lda_config, model_zoo

from .conftest import tiny_cfg

EXPECTED_DEFAULTS = {
    "GAMMA": 1.5, "BETA": 0.1, "MARGIN": 1.0, "WINDOW": 100, "PROJECTION_DIM": 128,
    "PROJECTION_HIDDEN_DIM": 0, "CLASS_COUNT_SOURCE": "instance_count", "COUNTS_UNDER_SAMPLER": False, "CLASS_COUNTS": [],
    "UNBALANCED_LOSS_WEIGHT": 1.0, "BALANCED_LOSS_WEIGHT": 2.0, "FG_BG_LOSS_WEIGHT": 1.0,
    "WEIGHTED_INTER": False, "FIXED_ALPHA": -1.0, "SCALING": "official", "LOSS_NORMALIZATION": "sampled",
    "SCORE_MODE": "balanced",
}
LDA_CONFIGS = ["mask_rcnn_R_50_FPN_1x.yaml", "mask_rcnn_R_50_FPN_2x.yaml", "mask_rcnn_R_50_FPN_3x.yaml",
               "mask_rcnn_R_101_FPN_1x.yaml", "mask_rcnn_X_101_32x4d_FPN_1x.yaml"]


def test_keys_and_defaults():
    cfg = get_cfg()
    add_lda_config(cfg)
    assert dict(cfg.MODEL.LDA) == EXPECTED_DEFAULTS
    assert cfg.MODEL.ROI_BOX_HEAD.LOG_PERIOD == 20  # one log period, every predictor's


def test_every_key_has_a_comment():
    source = open(os.path.join(os.path.dirname(lda_det.__file__), "config.py")).read().splitlines()
    for number, line in enumerate(source):
        if re.match(r"\s*_C\.MODEL\.LDA\.[A-Z_]+ = ", line):
            assert source[number - 1].strip().startswith("#"), f"config.py:{number + 1} has no comment"


def test_registry_lookup_by_name():
    assert ROI_HEADS_REGISTRY.get("LDAROIHeads") is lda_det.LDAROIHeads
    assert ROI_HEADS_REGISTRY.get("LDARes5ROIHeads") is lda_det.LDARes5ROIHeads
    assert BACKBONE_REGISTRY.get("build_narrow_resnet_fpn_backbone") is not None


def test_yaml_alone_selects_the_head(synthetic_root):
    model = build_model(tiny_cfg())
    assert type(model.roi_heads) is lda_det.LDAROIHeads
    assert type(model.roi_heads.box_predictor) is lda_det.LDAOutputLayers
    assert model.roi_heads.mask_on
    baseline = build_model(tiny_cfg(head="StandardROIHeads"))
    assert type(baseline.roi_heads.box_predictor).__name__ == "FastRCNNOutputLayers"


def test_c4_head_builds(synthetic_root):
    cfg = tiny_cfg(head="LDARes5ROIHeads")
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.RES5_DILATION = 1
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    cfg.MODEL.RPN.IN_FEATURES = ["res4"]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16, 32, 64]]
    model = build_model(cfg)
    assert isinstance(model.roi_heads.box_predictor, lda_det.LDAOutputLayers)
    assert model.roi_heads.box_predictor.bbox_pred.in_features == 512


@pytest.mark.parametrize("name", LDA_CONFIGS)
def test_lvis_configs_follow_table_4(name):
    cfg = model_zoo.get_config("LVIS-LDA/" + name)
    baseline = model_zoo.get_config("LVIS-LDA/baseline_" + name)
    assert cfg.MODEL.ROI_HEADS.NAME == "PredictorROIHeads" and baseline.MODEL.ROI_HEADS.NAME == "StandardROIHeads"
    assert cfg.MODEL.ROI_BOX_HEAD.PREDICTOR == "LDAOutputLayers"
    assert (cfg.MODEL.LDA.GAMMA, cfg.MODEL.LDA.BETA) == (1.5, 0.1)
    for c in (cfg, baseline):
        assert c.DATASETS.TRAIN == ("lvis_v1_train",) and c.DATASETS.TEST == ("lvis_v1_val",)
        assert c.MODEL.ROI_HEADS.NUM_CLASSES == 1203 and c.MODEL.MASK_ON
        assert c.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
        assert c.DATALOADER.REPEAT_THRESHOLD == 0.001
        assert tuple(c.INPUT.MIN_SIZE_TRAIN) == tuple(range(640, 801, 32))
        assert c.INPUT.MIN_SIZE_TRAIN_SAMPLING == "choice" and c.INPUT.RANDOM_FLIP == "horizontal"
        assert c.INPUT.MIN_SIZE_TEST == 800
        assert (c.SOLVER.MOMENTUM, c.SOLVER.WEIGHT_DECAY) == (0.9, 1e-4)
        assert c.SOLVER.BASE_LR / c.SOLVER.IMS_PER_BATCH == pytest.approx(0.01 / 8)
        # The paper's schedules: lr x0.1 at epochs 8 and 11 of 12 (1x, and 2x scaled), 27 and 33 of 36 (3x).
        drops = [27 / 36, 33 / 36] if "3x" in name else [8 / 12, 11 / 12]
        assert [s / c.SOLVER.MAX_ITER for s in c.SOLVER.STEPS] == pytest.approx(drops)
        assert c.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 1e-4 and c.TEST.DETECTIONS_PER_IMAGE == 300
        # Not in Table 4: clipping against rare-instance spikes (both, so that the pair stays comparable).
        assert c.SOLVER.CLIP_GRADIENTS.ENABLED and c.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "norm"
    # The LDA head's strength: the coefficient the synthetic demo validated, per normalised risk.
    assert (cfg.MODEL.LDA.SCALING, cfg.MODEL.LDA.BALANCED_LOSS_WEIGHT) == ("calibrated", 0.0031)
    # The baseline differs from LDA only by the ROI head (the MODEL.LDA keys act on the LDA head only).
    cfg.MODEL.ROI_HEADS.NAME = baseline.MODEL.ROI_HEADS.NAME
    cfg.MODEL.ROI_BOX_HEAD.PREDICTOR = baseline.MODEL.ROI_BOX_HEAD.PREDICTOR
    cfg.MODEL.LDA = baseline.MODEL.LDA
    assert cfg == baseline
    # Plain detectron2 reads the baseline configs: they use no MODEL.LDA key.
    plain = get_cfg()
    plain.merge_from_file(model_zoo.get_config_file("LVIS-LDA/baseline_" + name))


def test_schedules_and_backbones():
    def get(name):
        return model_zoo.get_config("LVIS-LDA/" + name)
    assert [get(f"mask_rcnn_R_50_FPN_{s}x.yaml").SOLVER.MAX_ITER for s in (1, 2, 3)] == [90000, 180000, 270000]
    # 3x = 36 epochs of 7500 iterations: drops at epochs 27 and 33.
    for name in ("mask_rcnn_R_50_FPN_3x.yaml", "baseline_mask_rcnn_R_50_FPN_3x.yaml"):
        assert tuple(get(name).SOLVER.STEPS) == (202500, 247500)
    assert get("mask_rcnn_R_50_FPN_1x.yaml").MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    r101 = get("mask_rcnn_R_101_FPN_1x.yaml")
    assert r101.MODEL.RESNETS.DEPTH == 101 and r101.MODEL.WEIGHTS.endswith("MSRA/R-101.pkl")
    x101 = get("mask_rcnn_X_101_32x4d_FPN_1x.yaml")
    assert (x101.MODEL.RESNETS.DEPTH, x101.MODEL.RESNETS.NUM_GROUPS, x101.MODEL.RESNETS.WIDTH_PER_GROUP) == (101, 32, 4)


def test_model_zoo_paths_and_errors():
    path = model_zoo.get_config_file("LVIS-LDA/synthetic_lt_demo.yaml")
    assert os.path.isfile(path)
    with pytest.raises(RuntimeError, match="not available"):
        model_zoo.get_config_file("LVIS-LDA/no_such_config.yaml")


def test_model_zoo_get_builds_the_demo_model(synthetic_root, tmp_path):
    model = model_zoo.get("LVIS-LDA/synthetic_lt_demo.yaml", device="cpu")
    assert not model.training and type(model.roi_heads) is lda_det.PredictorROIHeads
    assert type(model.roi_heads.box_predictor) is lda_det.LDAOutputLayers
