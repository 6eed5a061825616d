"""`valid` masks samples out of every term: same result as computing on the subset."""
import torch

from lda_core import LDALoss

COUNTS = [40, 20, 8, 2]


def test_masked_batch_equals_subset_batch_including_window_and_gradients():
    g = torch.Generator().manual_seed(0)
    unbalanced = torch.randn(10, 4, generator=g, requires_grad=True)
    balanced = torch.randn(10, 4, generator=g, requires_grad=True)
    features = torch.randn(10, 6, generator=g, requires_grad=True)
    # Masked-out samples carry the background index 4 (out of range for C = 4), as in detectron2.
    targets = torch.tensor([0, 4, 1, 1, 4, 2, 0, 3, 4, 1])
    valid = targets < 4
    keep = valid.nonzero().squeeze(1)

    masked, subset = LDALoss(COUNTS, window=3, weighted_inter=True), LDALoss(COUNTS, window=3, weighted_inter=True)
    for _ in range(2):  # twice, so the second call sees the window written by the first
        a = masked(unbalanced, balanced, targets, features, valid=valid)
        b = subset(unbalanced[keep], balanced[keep], targets[keep], features[keep])
        for key in a:
            torch.testing.assert_close(a[key], b[key], msg=key)
    torch.testing.assert_close(masked.state_dict()["balance.accuracies"], subset.state_dict()["balance.accuracies"])

    grads_a = torch.autograd.grad(a["loss"], (unbalanced, balanced, features))
    grads_b = torch.autograd.grad(b["loss"], (unbalanced, balanced, features))
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb)
        assert torch.count_nonzero(ga[~valid]) == 0


def test_no_valid_sample_gives_zero_loss_and_keeps_window():
    criterion = LDALoss(COUNTS, window=2)
    logits = torch.randn(3, 4, requires_grad=True)
    out = criterion(logits, logits, torch.tensor([4, 4, 4]), torch.randn(3, 5), valid=torch.zeros(3, dtype=torch.bool))
    assert out["loss"].item() == 0.0
    out["loss"].backward()
    assert torch.count_nonzero(logits.grad) == 0
    assert criterion.balance.num_updates.item() == 0
