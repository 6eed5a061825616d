"""detectron2's federated loss (Zhou et al. 2021) on our datasets: metadata, the loss by hand, a tiny run."""
import json
import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from scipy import stats

from lda_det import FederatedOutputLayers, class_counts, model_zoo
from lda_det.data import ensure_available, lvis_v1_counts, synthetic_lt

from .conftest import load_train_net, tiny_cfg, tiny_opts

FED_OPTS = ["MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", True, "MODEL.ROI_BOX_HEAD.USE_FED_LOSS", True]
C = len(synthetic_lt.CATEGORY_NAMES)  # 24


def test_lvis_config_builds_1203_class_model_without_lvis_data():
    cfg = model_zoo.get_config("LVIS-LDA/federated_mask_rcnn_R_50_FPN_1x.yaml")
    baseline = model_zoo.get_config("LVIS-LDA/baseline_mask_rcnn_R_50_FPN_1x.yaml")
    head = cfg.MODEL.ROI_BOX_HEAD
    assert (head.USE_SIGMOID_CE, head.USE_FED_LOSS, head.FED_LOSS_NUM_CLASSES, head.FED_LOSS_FREQ_WEIGHT_POWER) == (
        True, True, 50, 0.5)
    # Only the four federated-loss keys and the head (the same, with CenterNet2's bias) differ from the baseline.
    assert (cfg.MODEL.ROI_HEADS.NAME, baseline.MODEL.ROI_HEADS.NAME) == ("PredictorROIHeads", "StandardROIHeads")
    assert cfg.MODEL.ROI_BOX_HEAD.PREDICTOR == "FederatedOutputLayers"
    cfg.MODEL.ROI_HEADS.NAME = baseline.MODEL.ROI_HEADS.NAME
    cfg.MODEL.ROI_BOX_HEAD.PREDICTOR = baseline.MODEL.ROI_BOX_HEAD.PREDICTOR
    for key in ("USE_SIGMOID_CE", "USE_FED_LOSS", "FED_LOSS_NUM_CLASSES", "FED_LOSS_FREQ_WEIGHT_POWER"):
        cfg.MODEL.ROI_BOX_HEAD[key] = baseline.MODEL.ROI_BOX_HEAD[key]
    assert cfg == baseline
    cfg.merge_from_list(FED_OPTS + ["MODEL.ROI_HEADS.NAME", "FederatedROIHeads"])
    cfg.MODEL.DEVICE = "cpu"
    # The weights come from detectron2's builtin LVIS v1 metadata; lvis_v1_train.json is not read.
    model = load_train_net().Trainer.build_model(cfg)
    predictor = model.roi_heads.box_predictor
    assert type(predictor) is FederatedOutputLayers and isinstance(predictor, FastRCNNOutputLayers)
    assert predictor.cls_score.out_features == 1204
    assert predictor.cls_score.bias.tolist() == pytest.approx([-math.log(99.0)] * 1204)  # CenterNet2's prior 0.01
    assert predictor.use_fed_loss and predictor.use_sigmoid_ce and predictor.fed_loss_num_classes == 50
    # image_count ** 0.5, against the LVIS v1 table shipped with lda_det (another source than detectron2's).
    shipped = lvis_v1_counts.lvis_v1_train_counts().image_count.astype(np.float64) ** 0.5
    np.testing.assert_allclose(predictor.fed_loss_cls_weights.numpy(), shipped, rtol=1e-6)


@pytest.mark.parametrize("name", ["synthetic_lt", "synthetic_lvis_profile"])
def test_synthetic_class_image_count_is_the_jsons(name, synthetic_root):
    ensure_available(name + "_train")
    train_meta = MetadataCatalog.get(name + "_train")
    with open(train_meta.json_file) as f:
        categories = json.load(f)["categories"]
    expected = [{"id": c["id"], "image_count": c["image_count"]} for c in categories]
    assert train_meta.class_image_count == expected
    assert MetadataCatalog.get(name + "_val").class_image_count == expected
    # ... and the json's counts are the training images that contain each class.
    if name == "synthetic_lt":
        counted = class_counts.image_counts(DatasetCatalog.get(name + "_train"), C)
        assert counted.tolist() == [c["image_count"] for c in categories]


def fed_predictor(num_classes_kept):
    cfg = tiny_cfg(head="StandardROIHeads",
                   opts=FED_OPTS + ["MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES", num_classes_kept])
    return FastRCNNOutputLayers(cfg, ShapeSpec(channels=8))


def tiny_batch():
    """6 proposals: classes 2, 7, 2 and three background (index C), with fixed logits."""
    gt = torch.tensor([2, 7, 2, C, C, C])
    logits = torch.linspace(-3.0, 2.5, 6 * (C + 1)).reshape(6, C + 1).sin() * 3
    return logits, gt


def bce_by_hand(logits, gt):
    """Per-class sigmoid BCE summed over proposals: -[t log s(x) + (1 - t) log(1 - s(x))], classes 0..C-1."""
    x = logits.double().numpy()
    column = np.zeros(C)
    for i in range(x.shape[0]):
        for k in range(C):
            t = 1.0 if gt[i] == k else 0.0
            s = 1 / (1 + math.exp(-x[i, k]))
            column[k] += -(t * math.log(s) + (1 - t) * math.log(1 - s))
    return column


def loss_and_kept_classes(predictor, logits, gt):
    logits = logits.clone().requires_grad_(True)
    loss = predictor.sigmoid_cross_entropy_loss(logits, gt)
    loss.backward()
    kept = torch.nonzero(logits.grad[:, :C].abs().sum(0)).flatten().tolist()
    assert logits.grad[:, C].abs().sum() == 0  # the background logit is not a class of the sigmoid loss
    return float(loss.detach()), kept


@pytest.mark.parametrize("num_classes_kept", [C + 1, C + 3])
def test_all_classes_kept_is_plain_sigmoid_bce(synthetic_root, num_classes_kept):
    logits, gt = tiny_batch()
    loss, kept = loss_and_kept_classes(fed_predictor(num_classes_kept), logits, gt)
    assert kept == list(range(C))
    assert loss == pytest.approx(bce_by_hand(logits, gt).sum() / 6, rel=1e-5)


def test_more_classes_than_the_logits_is_detectron2s_error(synthetic_root):
    """detectron2 samples FED_LOSS_NUM_CLASSES - #labels classes out of C + 1 without replacement."""
    logits, gt = tiny_batch()
    with pytest.raises(RuntimeError, match="cannot sample"):
        fed_predictor(C + 1 + 3 + 1).sigmoid_cross_entropy_loss(logits, gt)


def test_num_classes_counts_the_background(synthetic_root):
    """detectron2 (as CenterNet2) counts the background among FED_LOSS_NUM_CLASSES: with exactly C and a
    background proposal in the batch, one foreground class is left out."""
    logits, gt = tiny_batch()
    torch.manual_seed(0)
    loss, kept = loss_and_kept_classes(fed_predictor(C), logits, gt)
    assert len(kept) == C - 1 and {2, 7} <= set(kept)
    assert loss == pytest.approx(bce_by_hand(logits, gt)[kept].sum() / 6, rel=1e-5)


def test_fewer_classes_keep_the_ground_truth_and_sampled_negatives(synthetic_root):
    logits, gt = tiny_batch()
    predictor = fed_predictor(5)
    column = bce_by_hand(logits, gt)
    kept_sets = []
    for seed in (0, 0, 1, 2):
        torch.manual_seed(seed)
        loss, kept = loss_and_kept_classes(predictor, logits, gt)
        # The 2 ground-truth classes + (5 - 3 unique labels, background included) = 2 sampled negatives.
        assert {2, 7} <= set(kept) and len(kept) == 4
        assert loss == pytest.approx(column[kept].sum() / 6, rel=1e-5)
        kept_sets.append(kept)
    assert kept_sets[0] == kept_sets[1]  # seeded
    assert len({tuple(k) for k in kept_sets}) > 1


def test_negatives_are_drawn_by_image_count_to_the_power(synthetic_root):
    """With room for one negative, it is class k != 2, 7 with probability n_k^0.5 / sum n_j^0.5."""
    logits, gt = tiny_batch()
    predictor = fed_predictor(4)
    draws = 600
    counts = np.zeros(C)
    torch.manual_seed(0)
    for _ in range(draws):
        _, kept = loss_and_kept_classes(predictor, logits, gt)
        (negative,) = set(kept) - {2, 7}
        counts[negative] += 1
    image_count = np.asarray(synthetic_lt.TRAIN_IMAGE_COUNTS, np.float64)
    p = image_count ** 0.5
    p[[2, 7]] = 0
    p /= p.sum()
    assert counts[[2, 7]].sum() == 0
    # Pool the classes expected under 5 draws (if any) so that chi-square's approximation holds.
    candidates = p > 0
    small = candidates & (p * draws < 5)
    large = candidates & ~small

    def pooled(values):
        return np.append(values[large], values[small].sum()) if small.any() else values[large]
    observed, expected = pooled(counts), pooled(p) * draws
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # Uniform negatives would be rejected: the test can fail.
    uniform = pooled(candidates / candidates.sum()) * draws
    assert stats.chisquare(observed, uniform).pvalue < 1e-3


def test_tiny_federated_training_and_inference(synthetic_root, tmp_path):
    from .test_checkpoint import predict, val_inputs
    train_net = load_train_net()
    parser = train_net.default_argument_parser()
    demo = model_zoo.get_config_file("LVIS-LDA/synthetic_lt_demo.yaml")
    opts = tiny_opts(tmp_path, head="FederatedROIHeads") + [str(o) for o in FED_OPTS] + ["DATASETS.TEST", "()"]
    # detectron2's default of 50 classes cannot be sampled out of 24 + 1: setup says so before training.
    with pytest.raises(ValueError, match="FED_LOSS_NUM_CLASSES \\(50\\) exceeds NUM_CLASSES \\+ 1 \\(25\\)"):
        train_net.setup(parser.parse_args(["--config-file", demo] + opts))
    # 8 of 24: the sampling of negatives is exercised.
    opts += ["MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES", "8"]
    cfg = train_net.setup(parser.parse_args(["--config-file", demo] + opts))
    trainer = train_net.Trainer(cfg)
    assert type(trainer.model.roi_heads.box_predictor) is FederatedOutputLayers
    trainer.resume_or_load(resume=False)
    trainer.train()
    history = trainer.storage.history
    for key in ("loss_cls", "loss_box_reg", "loss_mask", "total_loss"):
        values = [value for value, _ in history(key).values()]
        assert len(values) == 3 and np.all(np.isfinite(values)), (key, values)
    for instances in predict(trainer.model, val_inputs()):
        assert len(instances) > 0
        assert float(instances.scores.min()) >= 0 and float(instances.scores.max()) <= 1
        assert int(instances.pred_classes.max()) < C and int(instances.pred_classes.min()) >= 0
        assert instances.pred_masks.shape[0] == len(instances)
