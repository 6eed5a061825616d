"""On a CUDA device: no host synchronisation in the loss step, bf16 autocast, torch.compile (Inductor).

Skipped without CUDA (the CPU counterparts are test_no_host_sync.py and
test_gradients_and_invariance.py); benchmarks/gpu_validate.sh runs them on a lent GPU.
"""
import pytest
import torch

from lda_core import LDALoss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

COUNTS = [60, 30, 12, 6, 3, 1]


def batch(seed, size=32, num_classes=len(COUNTS), feature_dim=16, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    tensors = (torch.randn(size, num_classes, generator=g, dtype=dtype), torch.randn(size, num_classes, generator=g,
               dtype=dtype), torch.randint(0, num_classes, (size,), generator=g),
               torch.randn(size, feature_dim, generator=g, dtype=dtype), torch.rand(size, generator=g) < 0.7)
    return [t.cuda() for t in tensors]


def test_sync_debug_mode_catches_a_host_read():
    # The tests below rely on this mode turning every synchronising call into an error.
    x = torch.ones(3, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError):
            x.sum().item()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("with_valid", [False, True])
def test_loss_step_never_synchronises_with_the_host(with_valid):
    criterion = LDALoss(COUNTS, window=4, weighted_inter=True).cuda()
    unbalanced, balanced, targets, features, valid = batch(0)
    leaves = [t.requires_grad_() for t in (unbalanced, balanced, features)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):  # the accuracy window fills and alpha turns on
            out = criterion(*leaves[:2], targets, leaves[2], valid=valid if with_valid else None)
            out["loss"].backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out["loss"]).item() and all(torch.isfinite(t.grad).all().item() for t in leaves)


def test_bf16_autocast_runs_the_loss_in_float32():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, len(COUNTS)).cuda()
    _, _, targets, features, _ = batch(1)
    criterion = LDALoss(COUNTS, window=1).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = head(features)
        assert logits.dtype == torch.bfloat16
        out = criterion(logits, logits, targets, logits)
    assert out["loss"].dtype == torch.float32
    reference = LDALoss(COUNTS, window=1).cuda()(logits.float(), logits.float(), targets, logits.float())
    torch.testing.assert_close(out["loss"], reference["loss"])
    out["loss"].backward()
    assert head.weight.grad.dtype == torch.float32 and torch.isfinite(head.weight.grad).all()


def test_inductor_compiled_loss_matches_eager_values_and_gradients():
    torch._dynamo.reset()
    eager, compiled = LDALoss(COUNTS, window=2).cuda(), LDALoss(COUNTS, window=2).cuda()
    compiled_forward = torch.compile(compiled, fullgraph=True)  # Inductor: Triton kernels on the GPU
    for seed in range(3):
        unbalanced, balanced, targets, features, valid = batch(seed)
        a_inputs = [t.clone().requires_grad_() for t in (unbalanced, balanced, features)]
        b_inputs = [t.clone().requires_grad_() for t in (unbalanced, balanced, features)]
        a = eager(*a_inputs[:2], targets, a_inputs[2], valid=valid)
        b = compiled_forward(*b_inputs[:2], targets, b_inputs[2], valid=valid)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
        a["loss"].backward()
        b["loss"].backward()
        for ga, gb in zip(a_inputs, b_inputs):
            torch.testing.assert_close(ga.grad, gb.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(eager.balance.accuracies, compiled.balance.accuracies)
