"""Detection settings that would be ignored or misread are refused, naming the key or the head."""
import pytest
import torch
from detectron2.modeling import build_model

from lda_det import model_zoo
from lda_det.checkpoint import box_predictor_head
from lda_det.class_counts import class_counts_from_config

from ..helpers import load_script
from .conftest import DEMO_CONFIG, load_train_net, tiny_cfg, tiny_opts

COUNTS_IGNORED = ("MODEL.LDA.CLASS_COUNTS is set (24 counts) but MODEL.LDA.CLASS_COUNT_SOURCE is 'instance_count', "
                  "which counts DATASETS.TRAIN instead: set MODEL.LDA.CLASS_COUNT_SOURCE config to use them, or "
                  "MODEL.LDA.CLASS_COUNTS [] to count the dataset")


@pytest.fixture(scope="module")
def loss_scale_tool():
    return load_script("projects/LDA/tools/loss_scale.py", "lda_det_loss_scale_refusals")


def test_class_counts_under_another_source_are_refused_not_ignored(synthetic_root, loss_scale_tool):
    cfg = tiny_cfg(opts=["MODEL.LDA.CLASS_COUNTS", [5] * 24])
    cfg.MODEL.DEVICE = "cpu"
    assert cfg.MODEL.LDA.CLASS_COUNT_SOURCE == "instance_count"
    with pytest.raises(ValueError) as refused:
        build_model(cfg)
    assert str(refused.value) == COUNTS_IGNORED
    with pytest.raises(ValueError, match="MODEL.LDA.CLASS_COUNTS is set"):
        class_counts_from_config(cfg)
    with pytest.raises(ValueError, match="MODEL.LDA.CLASS_COUNTS is set"):
        loss_scale_tool.loss_scale(cfg, 1)
    cfg.MODEL.LDA.CLASS_COUNT_SOURCE = "config"  # honoured under "config"
    assert build_model(cfg).roi_heads.box_predictor.class_counts.tolist() == [5] * 24


@pytest.fixture(scope="module")
def eqlv2_weights(synthetic_root, tmp_path_factory):
    """A state dict of an EQLv2 model (untrained: the refusal comes before any use of the values)."""
    cfg = tiny_cfg(head="EQLv2ROIHeads")
    cfg.MODEL.DEVICE = "cpu"
    path = tmp_path_factory.mktemp("eqlv2") / "eqlv2.pth"
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return path


def test_model_zoo_get_refuses_another_heads_weights(eqlv2_weights):
    # synthetic_lt_crt.yaml builds StandardROIHeads.
    with pytest.raises(ValueError) as refused:
        model_zoo.get("LVIS-LDA/synthetic_lt_crt.yaml", weights=str(eqlv2_weights), device="cpu")
    assert str(refused.value) == (
        f"{eqlv2_weights} holds the box predictor of EQLv2ROIHeads, but the model is built with StandardROIHeads "
        f"(MODEL.ROI_HEADS.NAME): set MODEL.ROI_HEADS.NAME EQLv2ROIHeads to evaluate them, or pass weights of a "
        f"StandardROIHeads model")


def test_eval_only_refuses_another_heads_weights(eqlv2_weights, tmp_path):
    train_net = load_train_net()
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", model_zoo.get_config_file(DEMO_CONFIG), "--eval-only"]
        + tiny_opts(tmp_path, head="SeesawROIHeads") + ["MODEL.WEIGHTS", str(eqlv2_weights), "MODEL.DEVICE", "cpu"])
    with pytest.raises(ValueError, match=rf"^{eqlv2_weights} holds the box predictor of EQLv2ROIHeads, but the "
                                         r"model is built with SeesawROIHeads"):
        train_net.main(args)


def test_box_predictor_heads_are_told_apart(synthetic_root):
    for head in ("StandardROIHeads", "LDAROIHeads", "EQLROIHeads", "EQLv2ROIHeads", "SeesawROIHeads"):
        cfg = tiny_cfg(head=head)
        cfg.MODEL.DEVICE = "cpu"
        assert box_predictor_head(build_model(cfg).state_dict().keys()) == head
    assert box_predictor_head(["backbone.stem.conv1.weight"]) is None  # an ImageNet backbone: nothing to check


def test_loss_scale_refuses_a_config_without_an_lda_head_and_no_gpus(loss_scale_tool, capsys):
    cfg = model_zoo.get_config("LVIS-LDA/eqlv2_mask_rcnn_R_50_FPN_1x.yaml")
    with pytest.raises(ValueError, match=r"^MODEL.ROI_HEADS.NAME PredictorROIHeads builds the box predictor "
                                         r"EQLv2OutputLayers: loss_scale.py tabulates the terms of LDA's loss, "
                                         r"which only LDAOutputLayers has$"):
        loss_scale_tool.loss_scale(cfg, 1)
    config = model_zoo.get_config_file("LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml")
    for gpus in ("0", "-2"):
        with pytest.raises(ValueError, match=rf"^--num-gpus must be at least 1, got {gpus}$"):
            loss_scale_tool.main(["--config-file", config, "--num-gpus", gpus])
