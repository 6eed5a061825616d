"""EQLv2OutputLayers (Equalization Loss v2, Tan et al., CVPR 2021): two steps against hand computation,
the gradient, 2 gloo ranks against one process, inference, the LVIS v1 config, a tiny training run."""
import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import lda_det
from lda_det import EQLv2OutputLayers, model_zoo
from lda_det.heads.eqlv2 import eqlv2_loss

from ..helpers import launch_on_ranks
from .eql_helpers import few_val_images, train_then_eval_only  # noqa: F401 (a fixture)
from .eqlv2_dist_worker import (NUM_CLASSES, STEPS, make_eqlv2, rank_batch, run_steps,
                                statistics_on_rank)
from .test_predictor import make_proposals

GAMMA, MU, ALPHA = 12.0, 0.8, 4.0  # the official defaults


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def bce(z, y):
    return math.log(1 + math.exp(-z)) if y else math.log(1 + math.exp(z))


def hand_step(logits, gt_classes, ratio):
    """EQLv2 by hand: (loss, positive and negative gradient sums of the C classes, q, r) for one step
    with the accumulated ratios g_j = ``ratio`` before it."""
    r = [1 / (1 + math.exp(-GAMMA * (g - MU))) for g in ratio] + [1.0]  # background column: 1
    q = [1 + ALPHA * (1 - r_j) for r_j in r]
    loss, pos, neg = 0.0, [0.0] * NUM_CLASSES, [0.0] * NUM_CLASSES
    for row, gt in zip(logits, gt_classes):
        for j, z in enumerate(row):
            y = int(j == gt)
            weight = q[j] if y else r[j]
            loss += weight * bce(z, y)
            if j < NUM_CLASSES:
                (pos if y else neg)[j] += weight * abs(sigmoid(z) - y)
    return loss / len(logits), pos, neg, q, r


# Two steps, C = 3 classes + background column. Step 1: proposals of classes 0, 1, 2 and background.
STEP1_GT = [0, 1, 2, 3]
STEP1 = [[0.0, -2.0, -1.2, 0.5],
         [-1.0, -0.5, 0.3, 1.0],
         [-2.0, -0.4, 1.5, -0.2],
         [-0.7, -1.5, -0.9, 2.0]]
STEP2_GT = [1, 0, 3, 0, 2]
STEP2 = [[0.4, 0.3, -0.5, -0.5],
         [1.2, -0.8, 0.0, 0.0],
         [-0.3, 0.9, 1.1, 1.1],
         [-0.6, -1.1, 0.2, 0.2],
         [0.5, 0.1, -0.3, 0.7]]


def losses_of(predictor, logits, gt_classes):
    logits = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    deltas = torch.zeros(len(logits), 4 * NUM_CLASSES, dtype=torch.float64)
    with EventStorage(0):
        losses = predictor.losses((logits, deltas), make_proposals([gt_classes]))
    return losses, logits


def test_two_steps_match_hand_computation():
    predictor = make_eqlv2()
    # Before any step g_j = 100 (official initial ratio): every weight is 1, plain BCE.
    q, r = predictor.class_weights()
    assert q.tolist() == [1.0] * 4 and r.tolist() == [1.0] * 4
    losses, _ = losses_of(predictor, STEP1, STEP1_GT)
    loss1, pos1, neg1, _, _ = hand_step(STEP1, STEP1_GT, [100.0] * NUM_CLASSES)
    assert losses["loss_cls"].item() == pytest.approx(loss1, rel=1e-12)
    # Step 1, written out: class 0's positive is row 0 (|sigmoid(0) - 1| = 1/2), its negatives rows 1-3.
    assert pos1[0] == pytest.approx(0.5) and neg1[0] == pytest.approx(sigmoid(-1.0) + sigmoid(-2.0) + sigmoid(-0.7))
    assert pos1[1] == pytest.approx(1 - sigmoid(-0.5))
    assert neg1[1] == pytest.approx(sigmoid(-2.0) + sigmoid(-0.4) + sigmoid(-1.5))
    torch.testing.assert_close(predictor.pos_grad, torch.tensor(pos1, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(predictor.neg_grad, torch.tensor(neg1, dtype=torch.float64), rtol=1e-12, atol=0)
    ratio1 = [p / (n + 1e-10) for p, n in zip(pos1, neg1)]
    torch.testing.assert_close(predictor.pos_neg, torch.tensor(ratio1, dtype=torch.float64), rtol=1e-12, atol=0)

    # Step 2 is weighted by the ratios of step 1.
    loss2, pos2, neg2, q2, r2 = hand_step(STEP2, STEP2_GT, ratio1)
    q, r = predictor.class_weights()
    torch.testing.assert_close(q, torch.tensor(q2, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(r, torch.tensor(r2, dtype=torch.float64), rtol=1e-12, atol=0)
    # g = 0.69, 0.89, 0.17 after step 1: negative weights about 0.21, 0.75 and 5e-4.
    assert 0.1 < r2[0] < 0.3 and 0.6 < r2[1] < 0.9 and r2[2] < 1e-3
    losses, logits = losses_of(predictor, STEP2, STEP2_GT)
    assert losses["loss_cls"].item() == pytest.approx(loss2, rel=1e-12)
    accumulated = [[a + b for a, b in zip(pos1, pos2)], [a + b for a, b in zip(neg1, neg2)]]
    torch.testing.assert_close(predictor.pos_grad, torch.tensor(accumulated[0], dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(predictor.neg_grad, torch.tensor(accumulated[1], dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(predictor.pos_neg, torch.tensor(
        [p / (n + 1e-10) for p, n in zip(*accumulated)], dtype=torch.float64), rtol=1e-12, atol=0)

    # The gradient w.r.t. the logits: weight x (sigmoid(z) - y) / N, the weights detached.
    losses["loss_cls"].backward()
    for i, (row, gt) in enumerate(zip(STEP2, STEP2_GT)):
        for j, z in enumerate(row):
            y = int(j == gt)
            expected = (q2[j] if y else r2[j]) * (sigmoid(z) - y) / len(STEP2)
            assert logits.grad[i, j].item() == pytest.approx(expected, rel=1e-10, abs=1e-15)


def test_gradcheck_of_the_weighted_loss():
    predictor = make_eqlv2()
    predictor.pos_neg.copy_(torch.tensor([0.3, 0.8, 1.4], dtype=torch.float64))
    q, r = predictor.class_weights()
    gt_classes = torch.tensor(STEP2_GT)
    logits = torch.tensor(STEP2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: eqlv2_loss(z, gt_classes, q, r)[0], (logits,))
    assert torch.autograd.gradgradcheck(lambda z: eqlv2_loss(z, gt_classes, q, r)[0], (logits,))


def test_two_gloo_ranks_keep_the_statistics_of_one_process_on_the_global_batch(tmp_path):
    prefix = str(tmp_path / "eqlv2")
    launch_on_ranks(statistics_on_rank, 2, prefix)
    ranks = [torch.load(f"{prefix}.rank{r}.pt") for r in range(2)]

    def global_batch(step):
        parts = [rank_batch(rank, step) for rank in range(2)]
        return torch.cat([logits for logits, _ in parts]), [p for _, proposals in parts for p in proposals]
    expected = run_steps(make_eqlv2(), [global_batch(step) for step in range(STEPS)])
    rank0_alone = run_steps(make_eqlv2(), [rank_batch(0, step) for step in range(STEPS)])
    for name, value in expected.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-12, atol=0, msg=name)
    assert (expected["pos_grad"] > 0).all() and (expected["neg_grad"] > 0).all()
    assert not torch.allclose(rank0_alone["neg_grad"], expected["neg_grad"])  # the other rank's share counts


@pytest.mark.parametrize("test_with_obj", [True, False])
def test_inference_gives_valid_instances(test_with_obj):
    predictor = make_eqlv2(test_with_obj=test_with_obj).float().eval()  # torchvision's NMS: float32 boxes
    torch.nn.init.normal_(predictor.cls_score.weight, std=1.0)
    proposals = make_proposals([[0] * 6, [0] * 5])
    for instances in proposals:
        instances.remove("gt_classes")
        instances.remove("gt_boxes")
    with torch.no_grad():
        predictions = predictor(torch.randn(11, 8))
        probs = torch.cat(predictor.predict_probs(predictions, proposals))
        results, _ = predictor.inference(predictions, proposals)
    logits = predictions[0]
    expected = torch.sigmoid(logits[:, :NUM_CLASSES])
    if test_with_obj:  # the official get_activation: sigmoid(z_j) (1 - sigmoid(z_bg))
        expected = expected * (1 - torch.sigmoid(logits[:, NUM_CLASSES:]))
    torch.testing.assert_close(probs[:, :NUM_CLASSES], expected)
    for result, n in zip(results, (6, 5)):
        assert 0 < len(result) <= n * NUM_CLASSES
        assert ((result.scores > 0) & (result.scores <= 1)).all()
        assert ((result.pred_classes >= 0) & (result.pred_classes < NUM_CLASSES)).all()


def test_lvis_v1_config_builds_without_lvis_data(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = model_zoo.get_config("LVIS-LDA/eqlv2_mask_rcnn_R_50_FPN_1x.yaml")
    baseline = model_zoo.get_config("LVIS-LDA/baseline_mask_rcnn_R_50_FPN_1x.yaml")
    assert (cfg.MODEL.EQLV2.GAMMA, cfg.MODEL.EQLV2.MU, cfg.MODEL.EQLV2.ALPHA) == (12.0, 0.8, 4.0)
    cfg.MODEL.ROI_HEADS.NAME, cfg.MODEL.EQLV2 = baseline.MODEL.ROI_HEADS.NAME, baseline.MODEL.EQLV2
    cfg.MODEL.ROI_BOX_HEAD.PREDICTOR = baseline.MODEL.ROI_BOX_HEAD.PREDICTOR
    assert cfg == baseline  # same data (RFS 1e-3 kept), schedule and clipping
    cfg = model_zoo.get_config("LVIS-LDA/eqlv2_mask_rcnn_R_50_FPN_1x.yaml")
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    model = build_model(cfg)
    assert type(model.roi_heads) is lda_det.PredictorROIHeads
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 1204 and predictor.pos_grad.shape == (1203,)
    assert {"pos_grad", "neg_grad", "pos_neg"} <= {k.split(".")[-1] for k in predictor.state_dict()}


def test_classifier_starts_as_the_official_head():
    """tztztztztz/eqlv2 @ 6e003b9fa043f224648fc542d769b5d179c32ab7, mmdet/models/roi_heads/bbox_heads/
    convfc_bbox_head.py ConvFCBBoxHead.init_weights: normal_init(fc_cls, std=0.01, bias=bias_init_with_prob(0.001))
    on all C + 1 sigmoid columns; mmcv's bias_init_with_prob(p) = -log((1 - p) / p)."""
    predictor = make_eqlv2()
    assert predictor.cls_score.bias.tolist() == pytest.approx([-math.log(0.999 / 0.001)] * (NUM_CLASSES + 1))
    assert predictor.cls_score.bias[0].item() == pytest.approx(-6.906755, abs=1e-6)
    cfg = model_zoo.get_config("LVIS-LDA/eqlv2_mask_rcnn_R_50_FPN_1x.yaml")
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    weight = build_model(cfg).roi_heads.box_predictor.cls_score.weight
    assert weight.std().item() == pytest.approx(0.01, rel=0.02) and abs(weight.mean().item()) < 1e-3
    # First-step loss on features that carry nothing yet: every column at p = 0.001, so a positive costs
    # q_y log 1000 and a negative r_j log(1000 / 999) (on LVIS: not 1204 log 2 = 834 per proposal).
    gt_classes = [0, 1, NUM_CLASSES, NUM_CLASSES]
    scores = predictor.cls_score(torch.zeros(len(gt_classes), 8, dtype=torch.float64))
    q, r = predictor.class_weights()
    loss, _, _ = eqlv2_loss(scores, torch.tensor(gt_classes), q, r)
    by_hand = sum(q[y].item() * math.log(1000) + sum(r[j].item() * math.log(1000 / 999)
                                                   for j in range(NUM_CLASSES + 1) if j != y)
                  for y in gt_classes) / len(gt_classes)
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)  # the bias was set in float32


def test_tiny_training_and_eval_only(few_val_images, tmp_path, monkeypatch):
    trainer, loaded = train_then_eval_only(tmp_path, monkeypatch, [
        "MODEL.ROI_HEADS.NAME", "EQLv2ROIHeads", "MODEL.ROI_BOX_HEAD.LOG_PERIOD", 1])
    trained = trainer.model.roi_heads.box_predictor
    assert isinstance(trained, EQLv2OutputLayers)
    assert (trained.neg_grad > 0).all() and (trained.pos_grad > 0).any()
    assert "eqlv2/neg_weight_mean" in trainer.storage.histories()
    # The statistics travel in the checkpoint.
    for name in ("pos_grad", "neg_grad", "pos_neg"):
        assert torch.equal(getattr(loaded.roi_heads.box_predictor, name), getattr(trained, name)), name
