"""Gradients (gradcheck, float64), invariance to sample order, autocast and torch.compile."""
import pytest
import torch

from lda_core import LDALoss, class_divergence

COUNTS = [60, 30, 12, 6, 3, 1]


def warmed_up_criterion(**kwargs):
    """A criterion whose window holds a positive gap, in eval mode so alpha is frozen."""
    criterion = LDALoss(COUNTS, gamma=1.5, window=3, margin=1.2, **kwargs).double()
    targets = torch.tensor([0, 1, 2, 3])
    unbalanced = torch.nn.functional.one_hot(targets, 6).double()
    criterion(unbalanced, torch.zeros(4, 6, dtype=torch.float64), targets)
    return criterion.eval()


def random_batch(seed=0, batch_size=9, feature_dim=5):
    g = torch.Generator().manual_seed(seed)
    targets = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 5])[:batch_size]
    make = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()
    return make(batch_size, 6), make(batch_size, 6), targets, make(batch_size, feature_dim)


@pytest.mark.parametrize("weighted_inter", [False, True])
def test_gradcheck_full_loss(weighted_inter):
    criterion = warmed_up_criterion(weighted_inter=weighted_inter)
    unbalanced, balanced, targets, features = random_batch()
    assert criterion(unbalanced, balanced, targets, features)["alpha"].item() > 0
    assert torch.autograd.gradcheck(
        lambda u, b, f: criterion(u, b, targets, f)["loss"], (unbalanced, balanced, features))


def test_gradcheck_each_divergence_term():
    _, _, targets, features = random_batch(seed=1)
    assert torch.autograd.gradcheck(lambda f: class_divergence(f, targets, margin=1.5)[0], (features,))
    # margin 2 keeps every pair inside the hinge, so the gradient is smooth everywhere.
    assert torch.autograd.gradcheck(lambda f: class_divergence(f, targets, margin=2.0)[1], (features,))


def test_loss_is_invariant_to_sample_order():
    unbalanced, balanced, targets, features = random_batch(seed=2)
    permutation = torch.randperm(targets.shape[0], generator=torch.Generator().manual_seed(3))
    reference, permuted = warmed_up_criterion(), warmed_up_criterion()
    a = reference(unbalanced, balanced, targets, features)
    b = permuted(unbalanced[permutation], balanced[permutation], targets[permutation], features[permutation])
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    grads_a = torch.autograd.grad(a["loss"], (unbalanced, features))
    grads_b = torch.autograd.grad(b["loss"], (unbalanced, features))
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb)  # both w.r.t. the same (unpermuted) leaves


def test_bf16_autocast_accumulates_in_float32():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 6)
    x = torch.randn(32, 8)
    targets = torch.randint(0, 6, (32,))
    criterion = LDALoss(COUNTS, window=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x)
        assert logits.dtype == torch.bfloat16
        out = criterion(logits, logits, targets, logits)
    assert out["loss"].dtype == torch.float32
    reference = LDALoss(COUNTS, window=1)(logits.float(), logits.float(), targets, logits.float())
    torch.testing.assert_close(out["loss"], reference["loss"])
    out["loss"].backward()
    assert head.weight.grad.dtype == torch.float32


def test_compiles_without_graph_breaks_and_matches_eager():
    torch._dynamo.reset()
    eager, compiled = LDALoss(COUNTS, window=2), LDALoss(COUNTS, window=2)
    compiled_forward = torch.compile(compiled, fullgraph=True, backend="aot_eager")
    for seed in range(3):
        unbalanced, balanced, targets, features = (t.detach().float() if t.is_floating_point() else t
                                                   for t in random_batch(seed))
        a = eager(unbalanced, balanced, targets, features)
        b = compiled_forward(unbalanced, balanced, targets, features)
        for key in a:
            torch.testing.assert_close(a[key], b[key], msg=key)
    torch.testing.assert_close(eager.balance.accuracies, compiled.balance.accuracies)
