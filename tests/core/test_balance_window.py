"""The accuracy window behind alpha (Eq. 6): ring buffer, train/eval, state_dict, fixed alpha."""
import pytest
import torch

from lda_core import LDALoss


def batch(unbalanced_correct: int, balanced_correct: int, size: int = 4, num_classes: int = 3):
    """A batch in which h' is right on the first `unbalanced_correct` samples, h on `balanced_correct`."""
    targets = torch.arange(size) % num_classes
    wrong = (targets + 1) % num_classes
    unbalanced = torch.where(torch.arange(size) < unbalanced_correct, targets, wrong)
    balanced = torch.where(torch.arange(size) < balanced_correct, targets, wrong)
    return (torch.nn.functional.one_hot(unbalanced, num_classes).float() * 5,
            torch.nn.functional.one_hot(balanced, num_classes).float() * 5, targets)


def test_window_averages_last_batches_and_wraps_around():
    criterion = LDALoss([10, 10, 10], gamma=1.0, window=2)
    gaps = []
    for u, b in [(4, 0), (4, 2), (2, 2), (0, 4)]:
        gaps.append(criterion(*batch(u, b))["delta_acc"].item())
    # Per-batch gaps in percent: 100, 50, 0, -100; window of 2, zero-initialised.
    assert gaps == pytest.approx([50.0, 75.0, 25.0, -50.0])
    assert criterion(*batch(0, 4))["alpha"].item() == 0.0  # max(0, negative gap)^gamma


def test_eval_mode_leaves_window_untouched():
    criterion = LDALoss([10, 10, 10], gamma=1.0, window=3)
    criterion(*batch(4, 1))
    before = criterion.state_dict()
    criterion.eval()
    out = criterion(*batch(0, 4))
    assert out["delta_acc"].item() == pytest.approx(75.0 / 3)
    for key, value in criterion.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_state_dict_round_trip_resumes_same_alpha():
    first = LDALoss([10, 10, 10], gamma=2.0, window=3)
    for u, b in [(4, 1), (3, 3), (4, 0), (2, 1)]:
        first(*batch(u, b))
    second = LDALoss([10, 10, 10], gamma=2.0, window=3)
    second.load_state_dict(first.state_dict())
    for u, b in [(4, 2), (1, 0)]:
        a, b_ = first(*batch(u, b)), second(*batch(u, b))
        assert a["alpha"].item() == b_["alpha"].item()
    assert set(first.state_dict()) == {"balance.accuracies", "balance.num_updates"}


def test_fixed_alpha_is_constant_but_delta_acc_still_tracked():
    criterion = LDALoss([10, 10, 10], window=1, fixed_alpha=0.3)
    out = criterion(*batch(4, 2))
    assert out["alpha"].item() == pytest.approx(0.3)
    assert out["delta_acc"].item() == pytest.approx(50.0)


def test_alpha_carries_no_gradient():
    criterion = LDALoss([10, 10, 10], gamma=1.0, window=1)
    unbalanced, balanced, targets = batch(4, 1)
    out = criterion(unbalanced.requires_grad_(), balanced.requires_grad_(), targets)
    assert not out["alpha"].requires_grad


def test_normalized_scaling_measures_delta_acc_as_fraction():
    criterion = LDALoss([10, 10, 10], gamma=1.0, window=1, scaling="normalized")
    assert criterion(*batch(4, 2))["delta_acc"].item() == pytest.approx(0.5)


def test_invalid_window_is_rejected():
    with pytest.raises(ValueError, match="window"):
        LDALoss([1, 2], window=0)


def test_top1_matches_argmax_and_counts_ties_as_wrong():
    from lda_core.balance import is_top1

    logits = torch.randn(64, 7, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 7, (64,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(is_top1(logits, targets), logits.argmax(dim=1) == targets)
    assert not is_top1(torch.zeros(3, 4), torch.tensor([0, 1, 3])).any()
