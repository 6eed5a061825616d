"""EQLOutputLayers (Equalization Loss, Tan et al., CVPR 2020): the loss against the paper's formula
computed by hand, inference, the LVIS v1 config without data, and a tiny training run."""
import math

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.utils.events import EventStorage

import lda_det
from lda_det import EQLOutputLayers, model_zoo
from lda_det.class_counts import image_frequency_for_model

from .conftest import tiny_cfg
from .eql_helpers import few_val_images, train_then_eval_only  # noqa: F401 (a fixture)
from .test_predictor import make_proposals

NUM_CLASSES = 3
# f_j = image count / 100 images = 0.5, 0.1, 0.01: with lambda 0.05 class 2 alone is rare.
IMAGE_COUNTS, NUM_IMAGES, LAMBDA = [50, 10, 1], 100, 0.05
RARE = 2


def make_eql(**kwargs):
    torch.manual_seed(0)
    args = dict(box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)), num_classes=NUM_CLASSES,
                image_counts=IMAGE_COUNTS, num_images=NUM_IMAGES, lambda_=LAMBDA,
                test_score_thresh=0.0, test_topk_per_image=100, log_period=1)
    args.update(kwargs)
    return EQLOutputLayers(ShapeSpec(channels=8), **args)


# 4 proposals of one image: classes 0 and 1, background (3), the rare class 2.
GT_CLASSES = [0, 1, 3, 2]
LOGITS = [[2.0, -1.0, 0.5],
          [-0.5, 1.5, -2.0],
          [-1.0, 0.0, 1.0],
          [0.3, -0.2, -1.5]]


def test_loss_matches_hand_computation():
    predictor = make_eql()
    logits = torch.tensor(LOGITS, requires_grad=True)
    deltas = torch.zeros(4, 4 * NUM_CLASSES)
    with EventStorage(0):
        losses = predictor.losses((logits, deltas), make_proposals([GT_CLASSES]))

    def bce(z, y):  # -log sigmoid(z) for y = 1, -log(1 - sigmoid(z)) for y = 0
        return math.log(1 + math.exp(-z)) if y else math.log(1 + math.exp(z))
    # w_j = 1 - E(r) T(f_j) (1 - y_j): rows 0 and 1 (foreground, not class 2) drop column 2;
    # row 2 (background, E = 0) and row 3 (class 2 itself, y_2 = 1) keep every column.
    expected = (
        bce(2.0, 1) + bce(-1.0, 0) + 0 * bce(0.5, 0)
        + bce(-0.5, 0) + bce(1.5, 1) + 0 * bce(-2.0, 0)
        + bce(-1.0, 0) + bce(0.0, 0) + bce(1.0, 0)
        + bce(0.3, 0) + bce(-0.2, 0) + bce(-1.5, 1)
    ) / 4  # divided by the 4 sampled proposals
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-6)
    assert set(losses) == {"loss_cls", "loss_box_reg"}

    losses["loss_cls"].backward()
    grad = logits.grad
    # The rare class gets no negative gradient from foreground proposals of other classes...
    assert grad[0, RARE].item() == 0.0 and grad[1, RARE].item() == 0.0
    # ...but from background (sigmoid(1) / 4) and its own positive ((sigmoid(-1.5) - 1) / 4).
    sigmoid = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert grad[2, RARE].item() == pytest.approx(sigmoid(1.0) / 4, rel=1e-6)
    assert grad[3, RARE].item() == pytest.approx((sigmoid(-1.5) - 1) / 4, rel=1e-6)
    # Frequent classes keep their negative gradients from foreground proposals.
    assert grad[0, 1].item() == pytest.approx(sigmoid(-1.0) / 4, rel=1e-6)


def test_rare_classes_are_those_strictly_below_lambda():
    assert make_eql().rare_classes().tolist() == [0.0, 0.0, 1.0]
    assert make_eql(lambda_=0.1).rare_classes().tolist() == [0.0, 0.0, 1.0]  # f_1 = 0.1 is not below 0.1
    assert make_eql(lambda_=0.11).rare_classes().tolist() == [0.0, 1.0, 1.0]
    # The initial sigmoid probability is the prior (official bias init).
    assert torch.sigmoid(make_eql().cls_score.bias).tolist() == pytest.approx([0.001] * NUM_CLASSES)


def test_inference_gives_valid_instances():
    predictor = make_eql().eval()
    torch.nn.init.normal_(predictor.cls_score.weight, std=1.0)
    proposals = make_proposals([[0] * 6, [0] * 5])
    for instances in proposals:
        instances.remove("gt_classes")
        instances.remove("gt_boxes")
    with torch.no_grad():
        predictions = predictor(torch.randn(11, 8))
        probs = predictor.predict_probs(predictions, proposals)
        results, _ = predictor.inference(predictions, proposals)
    scores = torch.cat(probs)
    torch.testing.assert_close(scores[:, :NUM_CLASSES], torch.sigmoid(predictions[0]))
    assert scores.shape == (11, NUM_CLASSES + 1) and not scores[:, NUM_CLASSES].any()
    for result, n in zip(results, (6, 5)):
        assert 0 < len(result) <= n * NUM_CLASSES
        assert ((result.scores > 0) & (result.scores <= 1)).all()
        assert ((result.pred_classes >= 0) & (result.pred_classes < NUM_CLASSES)).all()


def test_frequencies_travel_in_the_checkpoint():
    trained = make_eql()
    unknown = make_eql(image_counts=None, num_images=0)
    assert not unknown.frequencies_known
    with EventStorage(0), pytest.raises(RuntimeError, match="no class frequencies"):
        unknown.losses((torch.zeros(4, NUM_CLASSES), torch.zeros(4, 4 * NUM_CLASSES)), make_proposals([GT_CLASSES]))
    unknown.load_state_dict(trained.state_dict())
    assert unknown.frequencies_known and unknown.image_counts.tolist() == IMAGE_COUNTS
    assert torch.equal(unknown.rare_classes(), trained.rare_classes())


def test_frequencies_of_a_dataset_on_disk(synthetic_root):
    """f_j's inputs from DATASETS.TRAIN: images containing each class, over images with an annotation."""
    cfg = tiny_cfg(opts=["MODEL.ROI_HEADS.NAME", "EQLROIHeads"])
    records = DatasetCatalog.get("synthetic_lt_train")
    expected = [sum(any(a["category_id"] == c for a in r["annotations"]) for r in records) for c in range(24)]
    counts, num_images = image_frequency_for_model(cfg)
    assert counts == expected and num_images == sum(bool(r["annotations"]) for r in records)
    cfg.DATASETS.TRAIN = ()
    assert image_frequency_for_model(cfg) is None  # nothing to count: inference only


def test_lvis_v1_config_builds_without_lvis_data(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ./datasets/lvis here
    monkeypatch.setattr("detectron2.data.datasets.lvis.load_lvis_json",
                        lambda *a, **k: pytest.fail("an LVIS json was loaded"))
    cfg = model_zoo.get_config("LVIS-LDA/eql_mask_rcnn_R_50_FPN_1x.yaml")
    baseline = model_zoo.get_config("LVIS-LDA/baseline_mask_rcnn_R_50_FPN_1x.yaml")
    assert cfg.MODEL.EQL.LAMBDA == 0.0011 and cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    # Only the ROI head and its keys differ from the baseline.
    cfg.MODEL.ROI_HEADS.NAME, cfg.MODEL.EQL = baseline.MODEL.ROI_HEADS.NAME, baseline.MODEL.EQL
    cfg.MODEL.ROI_BOX_HEAD.PREDICTOR = baseline.MODEL.ROI_BOX_HEAD.PREDICTOR
    assert cfg == baseline
    cfg = model_zoo.get_config("LVIS-LDA/eql_mask_rcnn_R_50_FPN_1x.yaml")
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    model = build_model(cfg)
    assert type(model.roi_heads) is lda_det.PredictorROIHeads
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 1203 and int(predictor.num_images) == 99388
    # 815 classes below 0.0011: the count the official EQL prints for LVIS v1 (eqlv2 repo's table).
    assert int(predictor.rare_classes().sum()) == 815


def test_tiny_training_and_eval_only_without_training_data(few_val_images, tmp_path, monkeypatch):
    """3 iterations on the synthetic set (lambda 0.02: its rarest classes are below it), then --eval-only
    without the training data: the frequencies come from the checkpoint."""
    trainer, loaded = train_then_eval_only(tmp_path, monkeypatch, [
        "MODEL.ROI_HEADS.NAME", "EQLROIHeads", "MODEL.EQL.LAMBDA", 0.02, "MODEL.ROI_BOX_HEAD.LOG_PERIOD", 1])
    trained = trainer.model.roi_heads.box_predictor
    assert isinstance(trained, EQLOutputLayers) and 0 < int(trained.rare_classes().sum()) < 24
    assert "fast_rcnn/cls_accuracy" in trainer.storage.histories()
    # Built without the training data (train_then_eval_only left us where it is absent): unknown until loaded.
    absent = tiny_cfg(opts=["MODEL.ROI_HEADS.NAME", "EQLROIHeads", "DATASETS.TRAIN", ("lvis_v0.5_train",)])
    assert not build_model(absent).roi_heads.box_predictor.frequencies_known
    predictor = loaded.roi_heads.box_predictor
    assert predictor.frequencies_known
    assert torch.equal(predictor.image_counts, trained.image_counts)
    assert torch.equal(predictor.num_images, trained.num_images)
