"""LDAOutputLayers on hand-made proposals: which proposals reach which head, and scores."""
import copy

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from lda_core import LDALoss
from lda_det import LDAOutputLayers

NUM_CLASSES = 3
BACKGROUND = NUM_CLASSES
CLASS_COUNTS = [20, 5, 1]
FEATURE_DIM = 8


def make_predictor(**kwargs):
    torch.manual_seed(0)
    args = dict(box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)), num_classes=NUM_CLASSES,
                class_counts=CLASS_COUNTS, projection_dim=4, projection_hidden_dim=6, window=5,
                test_score_thresh=0.0, test_topk_per_image=100, log_period=1)
    args.update(kwargs)
    predictor = LDAOutputLayers(ShapeSpec(channels=FEATURE_DIM), **args)
    # Larger weights than the 0.01 init so the logits differ visibly.
    for layer in (predictor.fg_bg_score, predictor.unbalanced_score, predictor.balanced_score):
        torch.nn.init.normal_(layer.weight, std=0.5)
        torch.nn.init.normal_(layer.bias, std=0.5)
    return predictor


def make_proposals(gt_classes_per_image, dtype=torch.float32):
    """One Instances per image with proposal / gt boxes (of ``dtype``) and the given gt_classes."""
    generator = torch.Generator().manual_seed(1)
    proposals = []
    for gt_classes in gt_classes_per_image:
        n = len(gt_classes)
        xy = torch.rand(n, 2, generator=generator, dtype=dtype) * 50
        wh = torch.rand(n, 2, generator=generator, dtype=dtype) * 30 + 5
        instances = Instances((100, 100))
        instances.proposal_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        instances.gt_boxes = Boxes(torch.cat([xy + 2, xy + wh - 1], dim=1))
        instances.gt_classes = torch.tensor(gt_classes, dtype=torch.long)
        proposals.append(instances)
    return proposals


GT_CLASSES = [[0, 3, 2, 3, 0, 3], [1, 3, 3, 0, 3]]  # positives: rows 0, 2, 4, 6, 9


def positive_rows():
    flat = torch.tensor([c for image in GT_CLASSES for c in image])
    return torch.nonzero(flat < BACKGROUND).squeeze(1), flat


def run_losses(predictor, features, proposals):
    with EventStorage(0) as storage:
        predictions = predictor(features)
        for tensor in (predictions[0].unbalanced_logits, predictions[0].balanced_logits, predictions[0].fg_bg_logits):
            tensor.retain_grad()
        losses = predictor.losses(predictions, proposals)
    return predictions, losses, storage


def test_losses_match_hand_computation():
    predictor = make_predictor()
    reference_lda = copy.deepcopy(predictor.lda_loss)  # fresh window, same class counts
    features = torch.randn(11, FEATURE_DIM)
    predictions, losses, _ = run_losses(predictor, features, make_proposals(GT_CLASSES))
    classification, _ = predictions
    positives, flat = positive_rows()

    # fg/bg: cross-entropy over all 11 sampled proposals, column 0 = fg, 1 = bg.
    expected_fg_bg = F.cross_entropy(classification.fg_bg_logits, (flat == BACKGROUND).long())
    torch.testing.assert_close(losses["loss_fg_bg"], expected_fg_bg)
    # LDA: exactly LDALoss on the 5 positives, weighted 5 / 11 (a positive's weight in a
    # mean over all sampled proposals).
    expected_lda = reference_lda(classification.unbalanced_logits[positives], classification.balanced_logits[positives],
                                 flat[positives], classification.projection[positives])
    torch.testing.assert_close(losses["loss_lda"], expected_lda["loss"] * 5 / 11)
    assert int(predictor.lda_loss.balance.num_updates) == 1


def test_positives_normalization_leaves_lda_loss_as_is():
    predictor = make_predictor(loss_normalization="positives")
    reference_lda = copy.deepcopy(predictor.lda_loss)
    predictions, losses, _ = run_losses(predictor, torch.randn(11, FEATURE_DIM), make_proposals(GT_CLASSES))
    classification, _ = predictions
    positives, flat = positive_rows()
    expected = reference_lda(classification.unbalanced_logits[positives], classification.balanced_logits[positives],
                             flat[positives], classification.projection[positives])
    torch.testing.assert_close(losses["loss_lda"], expected["loss"])


def test_box_regression_is_fast_rcnn_s():
    predictor = make_predictor()
    plain = FastRCNNOutputLayers(ShapeSpec(channels=FEATURE_DIM), box2box_transform=predictor.box2box_transform,
                                 num_classes=NUM_CLASSES)
    plain.bbox_pred.load_state_dict(predictor.bbox_pred.state_dict())
    features = torch.randn(11, FEATURE_DIM)
    proposals = make_proposals(GT_CLASSES)
    _, losses, _ = run_losses(predictor, features, proposals)
    with EventStorage(0):
        plain_losses = plain.losses(plain(features), proposals)
    torch.testing.assert_close(losses["loss_box_reg"], plain_losses["loss_box_reg"])
    # detectron2's own FastRCNNOutputLayers.box_reg_loss: the same value to the last bit.
    assert torch.equal(losses["loss_box_reg"], plain_losses["loss_box_reg"])
    assert losses["loss_box_reg"] > 0


def test_only_positives_reach_h_and_h_prime_and_fg_bg_sees_all():
    # alpha is 0 until h' beats h in the window; a fixed alpha lets h get a gradient now.
    predictor = make_predictor(fixed_alpha=0.5)
    predictions, losses, _ = run_losses(predictor, torch.randn(11, FEATURE_DIM), make_proposals(GT_CLASSES))
    sum(losses.values()).backward()
    classification, _ = predictions
    positives, flat = positive_rows()
    negatives = torch.nonzero(flat == BACKGROUND).squeeze(1)
    for logits in (classification.unbalanced_logits, classification.balanced_logits):
        assert torch.all(logits.grad[negatives] == 0)
        assert torch.all(logits.grad[positives].abs().sum(dim=1) > 0)
    assert torch.all(classification.fg_bg_logits.grad.abs().sum(dim=1) > 0)


def test_negatives_do_not_change_the_lda_loss():
    features = torch.randn(11, FEATURE_DIM)
    positives, flat = positive_rows()
    other = features.clone()
    other[flat == BACKGROUND] = torch.randn(int((flat == BACKGROUND).sum()), FEATURE_DIM) * 10
    _, losses, _ = run_losses(make_predictor(), features, make_proposals(GT_CLASSES))
    _, other_losses, _ = run_losses(make_predictor(), other, make_proposals(GT_CLASSES))
    torch.testing.assert_close(losses["loss_lda"], other_losses["loss_lda"])
    assert not torch.allclose(losses["loss_fg_bg"], other_losses["loss_fg_bg"])


def test_no_positive_gives_finite_backpropagating_losses():
    predictor = make_predictor()
    predictions, losses, storage = run_losses(predictor, torch.randn(5, FEATURE_DIM),
                                              make_proposals([[3, 3], [3, 3, 3]]))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_lda"] == 0 and losses["loss_box_reg"] == 0
    sum(losses.values()).backward()
    assert predictor.fg_bg_score.weight.grad.abs().sum() > 0
    for head in (predictor.unbalanced_score, predictor.balanced_score):
        assert head.weight.grad is not None and torch.all(head.weight.grad == 0)
    # An empty batch leaves the accuracy window (and so alpha) untouched.
    assert int(predictor.lda_loss.balance.num_updates) == 0
    assert "lda/alpha" in storage.latest()


def test_ignored_proposals_are_left_out_of_fg_bg():
    predictor = make_predictor()
    predictions, losses, _ = run_losses(predictor, torch.randn(4, FEATURE_DIM), make_proposals([[0, -1, 3, 1]]))
    logits = predictions[0].fg_bg_logits
    expected = F.cross_entropy(logits[[0, 2, 3]], torch.tensor([0, 1, 0]))
    torch.testing.assert_close(losses["loss_fg_bg"], expected)


@pytest.mark.parametrize("score_mode", ["balanced", "unbalanced"])
def test_inference_scores_are_p_fg_times_softmax(score_mode):
    predictor = make_predictor(score_mode=score_mode).eval()
    features = torch.randn(7, FEATURE_DIM)
    proposals = make_proposals([[3] * 4, [3] * 3])
    with torch.no_grad():
        predictions = predictor(features)
        probs = torch.cat(predictor.predict_probs(predictions, proposals))
        classification, _ = predictions
        p_fg = F.softmax(classification.fg_bg_logits, dim=1)[:, 0]
        logits = classification.balanced_logits if score_mode == "balanced" else classification.unbalanced_logits
        expected = p_fg[:, None] * F.softmax(logits, dim=1)
        torch.testing.assert_close(probs[:, :NUM_CLASSES], expected)
        torch.testing.assert_close(probs[:, NUM_CLASSES], 1 - p_fg)
        # detectron2's per-class NMS then keeps some (proposal, class) pairs with these scores.
        instances, kept = predictor.inference(predictions, proposals)
    assert classification.projection is None  # not computed at inference
    for image, (result, kept_rows) in enumerate(zip(instances, kept)):
        offset = 4 * image
        assert len(result) > 0
        torch.testing.assert_close(result.scores, expected[offset + kept_rows, result.pred_classes])


def test_balanced_and_unbalanced_scores_differ():
    features = torch.randn(4, FEATURE_DIM)
    proposals = make_proposals([[3] * 4])
    probs = {}
    for mode in ("balanced", "unbalanced"):
        predictor = make_predictor(score_mode=mode).eval()
        with torch.no_grad():
            probs[mode] = predictor.predict_probs(predictor(features), proposals)[0]
    assert not torch.allclose(probs["balanced"], probs["unbalanced"])
    torch.testing.assert_close(probs["balanced"][:, -1], probs["unbalanced"][:, -1])


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="SCORE_MODE"):
        make_predictor(score_mode="both")
    with pytest.raises(ValueError, match="USE_SIGMOID_CE"):
        make_predictor(use_sigmoid_ce=True)
    with pytest.raises(ValueError, match="LOSS_NORMALIZATION"):
        make_predictor(loss_normalization="mean")
    with pytest.raises(ValueError, match="class counts"):
        make_predictor(class_counts=[1, 2])


def test_logs_alpha_and_accuracies():
    predictor = make_predictor()
    _, _, storage = run_losses(predictor, torch.randn(11, FEATURE_DIM), make_proposals(GT_CLASSES))
    logged = storage.latest()
    for key in ("lda/alpha", "lda/delta_acc", "lda/loss_unbalanced", "lda/loss_balanced", "lda/loss_intra",
                "lda/loss_inter", "lda/fg_bg_accuracy", "lda/unbalanced_accuracy", "lda/balanced_accuracy",
                "lda/balanced_coefficient"):
        assert key in logged
    assert 0.0 <= logged["lda/fg_bg_accuracy"][0] <= 1.0
    # Official scaling: factor x alpha x B / N, B = 5 positives (not the padded rows), N = 26.
    assert logged["lda/balanced_coefficient"][0] == pytest.approx(
        predictor.lda_loss.balanced_factor * logged["lda/alpha"][0] * 5 / sum(CLASS_COUNTS))


def test_lda_loss_is_the_core_module():
    assert isinstance(make_predictor().lda_loss, LDALoss)
