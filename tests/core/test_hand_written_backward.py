"""The two hand-written autograd functions against plain autograd references.

``class_divergence`` and ``cross_entropy_and_top1`` write their backward by hand
(for speed); here their values and gradients must match the same quantities
written the obvious way (a loop over classes, ``F.cross_entropy``), over batches
with singletons, left-out samples, class weights and margins on both sides of 1.
"""
import pytest
import torch
import torch.nn.functional as F

from lda_core import class_divergence
from lda_core.cross_entropy import cross_entropy_and_top1


def divergence_by_class_loop(features, targets, margin, class_weights=None, valid=None):
    """Eq. 7-8 with a Python loop over the classes; autograd gives the reference gradient."""
    keep = torch.ones_like(targets, dtype=torch.bool) if valid is None else valid
    classes = sorted(set(targets[keep].tolist()))
    centres = [features[keep & (targets == c)].mean(0) for c in classes]
    spreads = [(1 - F.cosine_similarity(centre[None], features[keep & (targets == c)])).mean()
               for c, centre in zip(classes, centres)]
    with_pairs = [s for c, s in zip(classes, spreads) if int((keep & (targets == c)).sum()) > 1]
    intra = torch.stack(with_pairs).mean() if with_pairs else features.sum() * 0
    numerator, denominator = features.sum() * 0, 0.0
    for a, mu_a in zip(classes, centres):
        for b, mu_b in zip(classes, centres):
            if a == b:
                continue
            weight = 1.0 if class_weights is None else float(class_weights[a] + class_weights[b])
            hinge = (margin - (1 - F.cosine_similarity(mu_a, mu_b, dim=0))).clamp(min=0)
            numerator, denominator = numerator + weight * hinge, denominator + weight
    inter = numerator / denominator if denominator > 0 else numerator
    return intra, inter


CASES = {
    "mixed sizes": ([0, 0, 0, 1, 1, 2, 4, 4, 7, 2, 0], None),
    "all singletons": ([3, 1, 4, 0, 2], None),
    "one class": ([2, 2, 2, 2], None),
    "left-out samples": ([0, 0, 1, 1, 1, 2, 3, 3], [1, 0, 1, 1, 0, 1, 1, 0]),
    "left-out share a class": ([5, 5, 5, 1, 1, 0], [0, 1, 1, 1, 1, 0]),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("margin", [0.4, 1.0, 1.7])
@pytest.mark.parametrize("weighted", [False, True])
def test_divergence_values_and_gradients_match_a_class_loop(case, margin, weighted):
    targets, valid = CASES[case]
    targets = torch.tensor(targets)
    valid = None if valid is None else torch.tensor(valid, dtype=torch.bool)
    g = torch.Generator().manual_seed(len(targets) + int(10 * margin))
    features = torch.randn(len(targets), 6, generator=g, dtype=torch.float64, requires_grad=True)
    class_weights = torch.rand(8, generator=g, dtype=torch.float64) if weighted else None

    got = class_divergence(features, targets, margin=margin, class_weights=class_weights, valid=valid)
    want = divergence_by_class_loop(features, targets, margin, class_weights, valid)
    for name, a, b in zip(("intra", "inter"), got, want):
        torch.testing.assert_close(a, b, msg=name)
        grad_got, = torch.autograd.grad(a, features, retain_graph=True)
        grad_want, = torch.autograd.grad(b, features, retain_graph=True)
        torch.testing.assert_close(grad_got, grad_want, msg=f"d {name} / d features")


@pytest.mark.parametrize("weighted", [False, True])
def test_divergence_gradcheck_with_left_out_samples_and_class_weights(weighted):
    g = torch.Generator().manual_seed(4)
    targets = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 3])
    valid = torch.tensor([1, 1, 1, 0, 1, 1, 1, 1, 0], dtype=torch.bool)
    features = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(4, generator=g, dtype=torch.float64) if weighted else None
    # margin 2: every pair inside the hinge, so the function is smooth where gradcheck probes it.
    assert torch.autograd.gradcheck(
        lambda f: class_divergence(f, targets, margin=2.0, class_weights=weights, valid=valid), (features,))


def test_divergence_is_differentiable_once_only():
    features = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    intra, _ = class_divergence(features, torch.tensor([0, 0, 1, 1]))
    grad, = torch.autograd.grad(intra, features, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        torch.autograd.grad(grad.sum(), features)


def test_cross_entropy_matches_torch_in_value_gradient_and_top1():
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(32, 11, generator=g, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 11, (32,), generator=g)
    weights = torch.rand(32, generator=g, dtype=torch.float64)
    loss, is_top1 = cross_entropy_and_top1(logits, targets, weights)
    expected = (weights * F.cross_entropy(logits, targets, reduction="none")).sum()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(torch.autograd.grad(loss, logits)[0], torch.autograd.grad(expected, logits)[0])
    assert torch.equal(is_top1, logits.argmax(dim=1) == targets)
    assert not is_top1.requires_grad


def test_cross_entropy_gradcheck_and_retained_graph():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    targets, weights = torch.tensor([0, 4, 4, 2, 1, 0]), torch.rand(6, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: cross_entropy_and_top1(z, targets, weights)[0], (logits,))
    loss, _ = cross_entropy_and_top1(logits, targets, weights)
    first, = torch.autograd.grad(loss, logits, retain_graph=True)
    second, = torch.autograd.grad(loss, logits)
    assert torch.equal(first, second)  # the backward leaves its saved buffer intact


def test_cross_entropy_top1_counts_ties_as_wrong_and_is_stable_for_large_logits():
    logits = torch.tensor([[5.0, 5.0, 1.0], [1000.0, -1000.0, 0.0], [0.0, 0.0, 0.0]])
    loss, is_top1 = cross_entropy_and_top1(logits, torch.tensor([0, 0, 2]), torch.ones(3))
    assert is_top1.tolist() == [False, True, False]
    expected = F.cross_entropy(logits, torch.tensor([0, 0, 2]), reduction="sum")
    assert torch.isfinite(loss) and torch.allclose(loss, expected)
