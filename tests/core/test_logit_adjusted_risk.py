"""LDALoss with balanced_risk="logit_adjusted": R_u(h) = E_{p_s}[CE(h(x) + log p_s(y), y)] (Menon et al. 2021).

Values against hand computation for each scaling, alpha from h's unshifted logits, gradients by
gradcheck; the DDP global-batch equality is in test_global_batch.py (both risks)."""
import math

import pytest
import torch

from lda_core import LDALoss

LOGITS_U = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]]
LOGITS_B = [[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]
TARGETS = [0, 1, 2, 0]
COUNTS = [50, 10, 2]  # class 2 has 2 images: log p_s = log(2 / 62)
N = sum(COUNTS)


def adjusted_cross_entropy(logits, target):
    shifted = [z + math.log(n / N) for z, n in zip(logits, COUNTS)]
    return -shifted[target] + math.log(sum(math.exp(z) for z in shifted))


def plain_cross_entropy(logits, target):
    return -logits[target] + math.log(sum(math.exp(z) for z in logits))


def inputs():
    return torch.tensor(LOGITS_U), torch.tensor(LOGITS_B), torch.tensor(TARGETS)


@pytest.mark.parametrize("scaling", ["official", "normalized", "calibrated"])
def test_the_risk_is_the_logit_adjusted_cross_entropy_weighted_as_the_importance_weights_mean(scaling):
    criterion = LDALoss(COUNTS, balanced_risk="logit_adjusted", scaling=scaling, fixed_alpha=0.7,
                        balanced_factor=2.0)
    out = criterion(*inputs())
    summed = sum(adjusted_cross_entropy(z, y) for z, y in zip(LOGITS_B, TARGETS))
    # The mean of w_y = 1 / (C n_y) under p_s is 1 / N (official, a sum); of N / (C n_y), 1 (a batch mean).
    expected = summed / N if scaling == "official" else summed / 4
    assert out["loss_balanced"].item() == pytest.approx(expected, rel=1e-6)
    unbalanced = sum(plain_cross_entropy(z, y) for z, y in zip(LOGITS_U, TARGETS)) / 4
    assert out["loss"].item() == pytest.approx(unbalanced + 2.0 * 0.7 * expected, rel=1e-6)


def test_the_importance_weighted_risk_is_unchanged_by_the_option():
    default = LDALoss(COUNTS)(*inputs())
    explicit = LDALoss(COUNTS, balanced_risk="importance_weighted")(*inputs())
    expected = sum(plain_cross_entropy(z, y) / (3 * COUNTS[y]) for z, y in zip(LOGITS_B, TARGETS))
    assert default["loss_balanced"].item() == explicit["loss_balanced"].item() == pytest.approx(expected, rel=1e-6)


def test_delta_acc_uses_the_test_time_logits_of_h_not_the_shifted_ones():
    # Sample 1 (class 1): raw h predicts 1 (correct); h + log p_s predicts 0 (50 vs 10 images): wrong.
    logits_b = torch.tensor([[0.0, 1.0, 0.0]])
    logits_u = torch.tensor([[0.0, -1.0, 0.0]])  # h' wrong
    targets = torch.tensor([1])
    assert (logits_b + torch.tensor(COUNTS).log()).argmax().item() == 0
    criterion = LDALoss(COUNTS, balanced_risk="logit_adjusted", window=1, gamma=1.0)
    out = criterion(logits_u, logits_b, targets)
    # acc(h') - acc(h) = 0 - 100 percent: h is counted correct.
    assert out["delta_acc"].item() == pytest.approx(-100.0)


def test_gradcheck_of_both_logits_and_the_features():
    torch.manual_seed(0)
    targets = torch.tensor([0, 0, 1, 2, 0, 1])
    logits_u = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    logits_b = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    features = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    for scaling in ("official", "calibrated"):
        criterion = LDALoss(COUNTS, balanced_risk="logit_adjusted", scaling=scaling, fixed_alpha=3.0, beta=0.5)
        assert torch.autograd.gradcheck(lambda u, b, f: criterion(u, b, targets, features=f)["loss"],
                                        (logits_u, logits_b, features))


def test_gradient_of_h_is_softmax_of_the_shifted_logits_minus_one_hot():
    logits_b = torch.tensor(LOGITS_B, dtype=torch.float64, requires_grad=True)
    criterion = LDALoss(COUNTS, balanced_risk="logit_adjusted", scaling="calibrated", fixed_alpha=1.0,
                        balanced_factor=1.0)
    criterion(torch.tensor(LOGITS_U, dtype=torch.float64), logits_b, torch.tensor(TARGETS))["loss"].backward()
    shifted = torch.tensor(LOGITS_B, dtype=torch.float64) + torch.tensor(COUNTS, dtype=torch.float64).div(N).log()
    expected = (shifted.softmax(1) - torch.nn.functional.one_hot(torch.tensor(TARGETS), 3)) / 4
    assert torch.allclose(logits_b.grad, expected, atol=1e-12)


def test_an_unknown_risk_is_refused():
    with pytest.raises(ValueError, match="balanced_risk must be one of"):
        LDALoss(COUNTS, balanced_risk="reweighted")
