"""Degenerate batches give finite, back-propagating losses; bad input gives a clear ValueError."""
import pytest
import torch

from lda_core import LDALoss

TERMS = ("loss", "loss_unbalanced", "loss_balanced", "loss_intra", "loss_inter", "alpha", "delta_acc")


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.float64).requires_grad_()


def run(targets, num_classes=5, feature_dim=4, with_features=True):
    b = targets.shape[0]
    unbalanced, balanced = leaf(b, num_classes), leaf(b, num_classes)
    features = leaf(b, feature_dim) if with_features else None
    out = LDALoss([100, 50, 20, 5, 1][:num_classes], window=2)(unbalanced, balanced, targets, features)
    out["loss"].backward()
    for term in TERMS:
        assert torch.isfinite(out[term]).all(), term
    return out, (unbalanced, balanced, features)


def test_single_class_batch_has_zero_inter_not_nan():
    out, (_, _, features) = run(torch.tensor([2, 2, 2]))
    assert out["loss_inter"].item() == 0.0
    assert out["loss_intra"].item() > 0.0
    assert torch.isfinite(features.grad).all()


def test_all_singletons_have_zero_intra():
    out, _ = run(torch.tensor([0, 1, 3, 4]))
    assert out["loss_intra"].item() == 0.0
    assert out["loss_inter"].item() > 0.0


def test_without_features_divergence_terms_are_zero():
    out, _ = run(torch.tensor([0, 1, 1]), with_features=False)
    assert out["loss_intra"].item() == 0.0 and out["loss_inter"].item() == 0.0


def test_empty_batch_gives_zero_loss_that_back_propagates():
    out, (unbalanced, balanced, features) = run(torch.zeros(0, dtype=torch.long))
    assert out["loss"].item() == 0.0
    assert out["loss"].requires_grad
    assert unbalanced.grad.shape == (0, 5) and features.grad.shape == (0, 4)


def test_empty_batch_does_not_move_the_window():
    criterion = LDALoss([1, 1], window=2)
    criterion(torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    assert criterion.balance.num_updates.item() == 0
    assert torch.count_nonzero(criterion.balance.accuracies) == 0


@pytest.mark.parametrize("bad_target", [-1, 5])
def test_targets_out_of_range_raise(bad_target):
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        LDALoss([1] * 5)(torch.zeros(2, 5), torch.zeros(2, 5), torch.tensor([0, bad_target]))


@pytest.mark.parametrize("shapes, message", [
    (((2, 5), (2, 4), (2,)), "balanced_logits shape"),
    (((2, 4), (2, 4), (2,)), r"unbalanced_logits must have shape \(B, 5\)"),
    (((2, 5), (2, 5), (3,)), "targets must have shape"),
    (((2, 5), (2, 5), (2, 1)), "targets must have shape"),
])
def test_wrong_shapes_raise(shapes, message):
    u, b, t = shapes
    with pytest.raises(ValueError, match=message):
        LDALoss([1] * 5)(torch.zeros(*u), torch.zeros(*b), torch.zeros(*t, dtype=torch.long))


def test_float_targets_and_bad_features_raise():
    criterion = LDALoss([1] * 5)
    with pytest.raises(ValueError, match="integer"):
        criterion(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2))
    with pytest.raises(ValueError, match="features"):
        criterion(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), torch.zeros(3, 4))


def test_bad_class_counts_raise():
    with pytest.raises(ValueError, match="non-negative"):
        LDALoss([3, -1])
    with pytest.raises(ValueError, match="empty"):
        LDALoss([])
    with pytest.raises(ValueError, match="scaling"):
        LDALoss([1, 2], scaling="percent")


@pytest.mark.parametrize("kwargs, name", [
    (dict(gamma=-1.0), "gamma"), (dict(gamma=float("nan")), "gamma"), (dict(beta=float("inf")), "beta"),
    (dict(beta=-0.5), "beta"), (dict(margin=float("nan")), "margin"), (dict(fixed_alpha=-2.0), "fixed_alpha"),
    (dict(fixed_alpha=float("inf")), "fixed_alpha"), (dict(window=0), "window"), (dict(window=2.5), "window"),
    (dict(balanced_factor=float("nan")), "balanced_factor"), (dict(unbalanced_factor="1"), "unbalanced_factor"),
])
def test_invalid_hyper_parameters_fail_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LDALoss([3, 2, 1], **kwargs)


@pytest.mark.parametrize("counts, message", [
    ([[3, 2], [1, 1]], "1-D"), ([3.0, float("nan")], "finite"), ([3.0, float("inf")], "finite"), ([], "empty"),
])
def test_invalid_class_counts_fail_with_a_clear_message(counts, message):
    with pytest.raises(ValueError, match=message):
        LDALoss(counts)
