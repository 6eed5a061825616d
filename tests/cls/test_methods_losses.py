"""Each compared loss against a hand computation of its paper's formula on a tiny batch."""
import math

import pytest
import torch

from lda_cls.methods.ce import CrossEntropyLoss, FocalLoss
from lda_cls.methods.class_weights import class_weights
from lda_cls.methods.ldam import LDAMLoss, ldam_margins
from lda_cls.methods.logit_adjust import LogitAdjustedLoss
from lda_cls.models.classifiers import LogitAdjustedClassifier


def softmax_row(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_ldam_margins_are_c_over_fourth_root_of_n_with_largest_half():
    # Delta_y ~ n_y^(-1/4): 100 -> 0.316228, 10 -> 0.562341, 1 -> 1; scaled so that the largest is 0.5.
    margins = ldam_margins([100, 10, 1], max_margin=0.5)
    expected = [0.5 * 0.316228, 0.5 * 0.562341, 0.5]
    assert margins.tolist() == pytest.approx(expected, abs=1e-6)


def test_ldam_loss_subtracts_the_margin_from_the_target_cosine_and_scales_by_s():
    loss_fn = LDAMLoss([100, 10, 1], max_margin=0.5, scale=30.0)
    cosines = torch.tensor([[0.5, 0.2, -0.1], [0.1, 0.3, 0.4]])
    targets = torch.tensor([1, 2])
    # Eq. 13: -log(e^{s(z_y - D_y)} / (e^{s(z_y - D_y)} + sum_{j != y} e^{s z_j})), batch mean.
    row0 = [30 * 0.5, 30 * (0.2 - 0.281171), 30 * -0.1]
    row1 = [30 * 0.1, 30 * 0.3, 30 * (0.4 - 0.5)]
    expected = (-math.log(softmax_row(row0)[1]) - math.log(softmax_row(row1)[2])) / 2
    loss = loss_fn({"logits": cosines}, targets)["loss"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_effective_number_weights_of_cui_et_al():
    # (1 - beta) / (1 - beta^n): beta 0.99, n = 1000 -> 0.01 / (1 - 0.99^1000) = 0.0100004,
    # n = 10 -> 0.01 / (1 - 0.904382) = 0.104583; normalised to sum to C = 2.
    weights = class_weights("effective", [1000, 10], beta=0.99)
    raw = [0.01 / (1 - 0.99 ** 1000), 0.01 / (1 - 0.99 ** 10)]
    assert raw == pytest.approx([0.0100004, 0.104583], rel=1e-5)
    assert weights.tolist() == pytest.approx([2 * r / sum(raw) for r in raw], rel=1e-6)
    # RW: 1 / n_y, normalised: 1/1000 and 1/10 -> 2 * (0.001, 0.1) / 0.101.
    assert class_weights("inverse", [1000, 10]).tolist() == pytest.approx([0.002 / 0.101, 0.2 / 0.101], rel=1e-6)


def test_focal_modulation_and_class_balanced_weighting():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    targets = torch.tensor([0, 2])
    p0, p1 = softmax_row([2.0, 0.0, -1.0])[0], softmax_row([0.5, 1.5, 0.0])[2]
    # -(1 - p)^gamma log p with gamma 2.
    focal = [-(1 - p0) ** 2 * math.log(p0), -(1 - p1) ** 2 * math.log(p1)]
    loss = FocalLoss(3, gamma=2.0)({"logits": logits}, targets)["loss"]
    assert loss.item() == pytest.approx(sum(focal) / 2, rel=1e-6)
    # CB-Focal: weighted mean with w_y, sum_i w_i FL_i / sum_i w_i.
    cb = FocalLoss(3, gamma=2.0)
    weights = torch.tensor([0.2, 1.0, 1.8])
    cb.set_class_weights(weights)
    expected = (0.2 * focal[0] + 1.8 * focal[1]) / (0.2 + 1.8)
    assert cb({"logits": logits}, targets)["loss"].item() == pytest.approx(expected, rel=1e-6)
    # gamma 0 is cross entropy.
    ce = CrossEntropyLoss(3)({"logits": logits}, targets)["loss"]
    assert FocalLoss(3, gamma=0.0)({"logits": logits}, targets)["loss"].item() == pytest.approx(ce.item(), rel=1e-6)


def test_balanced_softmax_is_the_prior_weighted_softmax_of_ren_et_al():
    counts = [90, 9, 1]
    logits = torch.tensor([[1.0, 0.5, 0.2], [0.0, 0.3, 1.0]])
    targets = torch.tensor([1, 2])
    # Eq. 4: phi_y = n_y e^{z_y} / sum_j n_j e^{z_j}.
    def balanced_nll(row, y):
        terms = [n * math.exp(z) for n, z in zip(counts, row)]
        return -math.log(terms[y] / sum(terms))
    expected = (balanced_nll([1.0, 0.5, 0.2], 1) + balanced_nll([0.0, 0.3, 1.0], 2)) / 2
    loss = LogitAdjustedLoss(counts, tau=1.0)({"logits": logits}, targets)["loss"]
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # Menon et al.'s tau scales the shift: tau = 2 is the prior squared.
    def adjusted_nll(row, y, tau):
        terms = [(n / 100) ** tau * math.exp(z) for n, z in zip(counts, row)]
        return -math.log(terms[y] / sum(terms))
    expected_tau2 = (adjusted_nll([1.0, 0.5, 0.2], 1, 2) + adjusted_nll([0.0, 0.3, 1.0], 2, 2)) / 2
    assert LogitAdjustedLoss(counts, tau=2.0)({"logits": logits}, targets)["loss"].item() == \
        pytest.approx(expected_tau2, rel=1e-6)


def test_posthoc_logit_adjustment_subtracts_tau_log_prior_at_evaluation_only():
    classifier = LogitAdjustedClassifier(2, 3)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        classifier.bias.zero_()
    classifier.log_prior.copy_(torch.tensor([0.7, 0.2, 0.1]).log())
    features = torch.tensor([[2.0, 1.0]])  # plain logits 2, 1, 3
    assert classifier.train()(features).tolist() == [[2.0, 1.0, 3.0]]
    adjusted = classifier.eval()(features)[0].tolist()
    assert adjusted == pytest.approx([2 - math.log(0.7), 1 - math.log(0.2), 3 - math.log(0.1)], rel=1e-6)
