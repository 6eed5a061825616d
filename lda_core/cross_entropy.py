"""Per-sample weighted cross entropy and top-1 correctness in one pass over the logits.

``cross_entropy_and_top1(logits, targets, weights)`` returns
(sum_i w_i CE(logits_i, y_i), [y_i is the unique largest logit of row i]).

Why not ``(w * F.cross_entropy(..., reduction="none")).sum()`` plus an argmax:
that allocates four (B, C) tensors per head and step (the saved log-softmax, a
zero gradient for nll_loss, the log-softmax gradient, a masked copy or a slow
argmax for the accuracy). Here the forward allocates one, exp(logits - max), and
finds the top-1 inside it, and the backward turns that same buffer into the
gradient. With C = 1000 the two heads are most of LDALoss's time on a CPU, where
a fresh (B, C) buffer also costs page faults (glibc hands freed memory back to
the system); see benchmarks/bench_loss.py. Values and gradients equal
F.cross_entropy's (tests/core/test_hand_written_backward.py).
"""
from typing import Tuple

import torch
from torch.autograd.function import once_differentiable


class _CrossEntropyAndTop1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor):
        index = targets.unsqueeze(1)
        row_max = logits.amax(dim=1, keepdim=True)
        shifted = logits - row_max
        target_shifted = shifted.gather(1, index)
        # Top-1 with ties counted as wrong: the target beats the largest *other* logit.
        # The target column is masked in place and restored, so no copy of the logits.
        largest_other = shifted.scatter_(1, index, float("-inf")).amax(dim=1)
        shifted.scatter_(1, index, target_shifted)
        is_top1 = target_shifted.squeeze(1) > largest_other

        shifted_exp = shifted.exp_()
        exp_sum = shifted_exp.sum(dim=1)
        cross_entropy = exp_sum.log() - target_shifted.squeeze(1)
        ctx.save_for_backward(logits, row_max, exp_sum, targets, weights)
        # Held outside save_for_backward because the backward consumes it (see there).
        ctx.shifted_exp = shifted_exp
        ctx.mark_non_differentiable(is_top1)
        return (weights * cross_entropy).sum(), is_top1

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, _grad_is_top1):
        logits, row_max, exp_sum, targets, weights = ctx.saved_tensors
        shifted_exp, ctx.shifted_exp = ctx.shifted_exp, None
        if shifted_exp is None:
            # Second backward through a retained graph: the first one used the buffer up.
            # Recomputed by the forward's own ops, so the gradient is bitwise the same.
            shifted_exp = (logits - row_max).exp_()
        sample_grad = grad_loss * weights
        # d CE_i / d logits_ic = softmax_ic - [c == y_i], written over the buffer: no new (B, C) tensor.
        grad_logits = shifted_exp.mul_((sample_grad / exp_sum).unsqueeze(1))
        grad_logits.scatter_add_(1, targets.unsqueeze(1), -sample_grad.unsqueeze(1))
        return grad_logits, None, None


def cross_entropy_and_top1(logits: torch.Tensor, targets: torch.Tensor,
                           weights: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sum_i weights_i CE(logits_i, targets_i), is_top1) for logits (B, C), targets (B,), weights (B,).

    ``is_top1`` (B,) bool: the target's logit is larger than every other (a tie is
    wrong). ``weights`` carries no gradient. Differentiable once w.r.t. ``logits``.
    """
    return _CrossEntropyAndTop1.apply(logits, targets, weights.to(logits.dtype).detach())
