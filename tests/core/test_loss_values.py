"""LDALoss terms against values computed by hand (paper Eq. 5-9, official scaling)."""
import math

import pytest
import torch

from lda_core import LDALoss, class_divergence


def cross_entropy_by_hand(logits, target):
    return -logits[target] + math.log(sum(math.exp(z) for z in logits))


LOGITS_U = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]]
LOGITS_B = [[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]
TARGETS = [0, 1, 2, 0]
COUNTS = [50, 10, 2]


def make_inputs():
    return torch.tensor(LOGITS_U), torch.tensor(LOGITS_B), torch.tensor(TARGETS)


def test_unbalanced_risk_is_mean_cross_entropy():
    criterion = LDALoss(COUNTS)
    out = criterion(*make_inputs())
    expected = sum(cross_entropy_by_hand(z, y) for z, y in zip(LOGITS_U, TARGETS)) / 4
    assert out["loss_unbalanced"].item() == pytest.approx(expected, rel=1e-6)


def test_balanced_risk_sums_inverse_frequency_weighted_cross_entropy():
    criterion = LDALoss(COUNTS)
    out = criterion(*make_inputs())
    # Official scaling: w_y = 1 / (C n_y), summed (not averaged) over the batch.
    expected = sum(cross_entropy_by_hand(z, y) / (3 * COUNTS[y]) for z, y in zip(LOGITS_B, TARGETS))
    assert out["loss_balanced"].item() == pytest.approx(expected, rel=1e-6)


def test_normalized_scaling_weights_have_mean_one_under_training_distribution():
    criterion = LDALoss(COUNTS, scaling="normalized")
    total = sum(COUNTS)
    weights = criterion.class_weights
    assert sum(n / total * w for n, w in zip(COUNTS, weights.tolist())) == pytest.approx(1.0)
    out = criterion(*make_inputs())
    expected = sum(total / (3 * COUNTS[y]) * cross_entropy_by_hand(z, y) for z, y in zip(LOGITS_B, TARGETS)) / 4
    assert out["loss_balanced"].item() == pytest.approx(expected, rel=1e-6)


def test_alpha_from_percent_accuracy_gap_over_zero_initialised_window():
    criterion = LDALoss(COUNTS, gamma=2.0, window=4)
    out = criterion(*make_inputs())
    # h' predicts 0,1,2,0: 4/4 correct = 100 %. h predicts 1,1,0,2: 1/4 = 25 %.
    # Window of 4 holds one batch and three zeros: delta = (100 - 25) / 4.
    assert out["delta_acc"].item() == pytest.approx(18.75)
    assert out["alpha"].item() == pytest.approx(18.75 ** 2)


def test_total_loss_combines_terms_with_factors_alpha_and_beta():
    criterion = LDALoss(COUNTS, gamma=1.0, beta=0.5, margin=1.5, window=2,
                        unbalanced_factor=1.0, balanced_factor=2.0)
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    out = criterion(*make_inputs(), features=features)
    expected = (1.0 * out["loss_unbalanced"] + 2.0 * out["alpha"] * out["loss_balanced"]
                + 0.5 * (out["loss_intra"] + out["loss_inter"]))
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["alpha"].item() == pytest.approx((100 - 25) / 2)


def test_intra_is_mean_cosine_distance_to_centre_over_classes_with_pairs():
    # Class 0: (1,0) and (0,1), centre (.5,.5): each at cosine 1/sqrt(2).
    # Class 1: (2,2) and (1,1), centre on the same ray: distance 0. Class 2: singleton, excluded.
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [1.0, 1.0], [5.0, -1.0]])
    targets = torch.tensor([0, 0, 1, 1, 2])
    intra, _ = class_divergence(features, targets)
    assert intra.item() == pytest.approx(((1 - 1 / math.sqrt(2)) + 0.0) / 2, rel=1e-6)


def test_inter_is_hinge_on_centre_cosine_distance_over_ordered_pairs():
    # Centres along x, y and -x: distances 1 (x,y), 2 (x,-x), 1 (y,-x).
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])
    targets = torch.tensor([4, 0, 2])
    _, inter = class_divergence(features, targets, margin=1.5)
    # Hinges: 0.5, 0, 0.5 for each unordered pair, each counted twice over 6 ordered pairs.
    assert inter.item() == pytest.approx((0.5 + 0.0 + 0.5) * 2 / 6, rel=1e-6)


def test_weighted_inter_uses_normalised_pair_weights():
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])
    targets = torch.tensor([0, 1, 2])
    weights = torch.tensor([1.0, 2.0, 4.0])
    _, inter = class_divergence(features, targets, margin=1.5, class_weights=weights)
    # Pair (0,1): hinge .5, weight 3; (0,2): hinge 0, weight 5; (1,2): hinge .5, weight 6.
    expected = (0.5 * 3 + 0.0 * 5 + 0.5 * 6) * 2 / ((3 + 5 + 6) * 2)
    assert inter.item() == pytest.approx(expected, rel=1e-6)


def test_weighted_inter_in_loss_uses_class_weights_from_counts():
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])
    targets = torch.tensor([0, 1, 2])
    logits = torch.zeros(3, 3)
    out = LDALoss(COUNTS, margin=1.5, weighted_inter=True)(logits, logits, targets, features)
    w = [1 / (3 * n) for n in COUNTS]
    pair_w = {(0, 1): w[0] + w[1], (0, 2): w[0] + w[2], (1, 2): w[1] + w[2]}
    hinge = {(0, 1): 0.5, (0, 2): 0.0, (1, 2): 0.5}
    expected = sum(hinge[p] * pair_w[p] for p in hinge) / sum(pair_w.values())
    assert out["loss_inter"].item() == pytest.approx(expected, rel=1e-6)


def test_calibrated_scaling_is_the_normalized_risk_with_the_official_alpha():
    calibrated = LDALoss(COUNTS, gamma=2.0, window=4, scaling="calibrated")
    normalized = LDALoss(COUNTS, gamma=2.0, window=4, scaling="normalized")
    official = LDALoss(COUNTS, gamma=2.0, window=4)
    out, out_normalized, out_official = (c(*make_inputs()) for c in (calibrated, normalized, official))
    assert out["loss_balanced"].item() == pytest.approx(out_normalized["loss_balanced"].item(), rel=1e-6)
    assert out["alpha"].item() == pytest.approx(out_official["alpha"].item())  # (18.75 %)^2
    # The normalised risk is N / B times the official sum: N = 62, B = 4.
    assert out["loss_balanced"].item() == pytest.approx(out_official["loss_balanced"].item() * 62 / 4, rel=1e-6)


@pytest.mark.parametrize("scaling, per_normalized_risk", [("official", 4 / 62), ("calibrated", 1.0),
                                                          ("normalized", 1.0)])
def test_balanced_coefficient_is_the_weight_of_the_normalized_balanced_risk(scaling, per_normalized_risk):
    criterion = LDALoss(COUNTS, gamma=2.0, window=4, balanced_factor=3.0, scaling=scaling)
    out = criterion(*make_inputs())
    assert out["balanced_coefficient"].item() == pytest.approx(3.0 * out["alpha"].item() * per_normalized_risk)
    # The balanced part of the loss is that coefficient times the normalised risk.
    normalized_risk = LDALoss(COUNTS, scaling="normalized")(*make_inputs())["loss_balanced"]
    balanced_part = out["loss"] - out["loss_unbalanced"]
    assert balanced_part.item() == pytest.approx(out["balanced_coefficient"].item() * normalized_risk.item(), rel=1e-5)


def test_balanced_coefficient_of_official_scaling_counts_only_valid_samples():
    criterion = LDALoss(COUNTS, gamma=1.0, window=1, balanced_factor=2.0)
    valid = torch.tensor([True, False, True, False])
    out = criterion(*make_inputs(), valid=valid)
    assert out["balanced_coefficient"].item() == pytest.approx(2.0 * out["alpha"].item() * 2 / 62)
