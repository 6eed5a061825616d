"""Per-sample weighted cross entropy and top-1 correctness in one pass over the logits.

``cross_entropy_and_top1(logits, targets, weights)`` returns
(sum_i w_i CE(logits_i, y_i), [y_i is the unique largest logit of row i]).

Why not ``(w * F.cross_entropy(..., reduction="none")).sum()`` plus an argmax:
that allocates four (B, C) tensors per head and step (the saved log-softmax, a
zero gradient for nll_loss, the log-softmax gradient, a masked copy or a slow
argmax for the accuracy). On a CPU, fresh (B, C) buffers cost page faults that
took longer than the arithmetic. Here the forward allocates one, exp(logits - max),
and finds the top-1 inside it; the backward allocates the gradient.
With C = 1000 this is most of LDALoss's time; see benchmarks/bench_loss.py.
Values and gradients equal F.cross_entropy's (tests/core/test_cross_entropy.py).
"""
from typing import Tuple

import torch
from torch.autograd.function import once_differentiable


class _CrossEntropyAndTop1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor):
        index = targets.unsqueeze(1)
        shifted = logits - logits.amax(dim=1, keepdim=True)
        target_shifted = shifted.gather(1, index)
        # Top-1 with ties counted as wrong: the target beats the largest *other* logit.
        # The target column is masked in place and restored, so no copy of the logits.
        largest_other = shifted.scatter_(1, index, float("-inf")).amax(dim=1)
        shifted.scatter_(1, index, target_shifted)
        is_top1 = target_shifted.squeeze(1) > largest_other

        shifted_exp = shifted.exp_()
        exp_sum = shifted_exp.sum(dim=1)
        cross_entropy = exp_sum.log() - target_shifted.squeeze(1)
        ctx.save_for_backward(shifted_exp, exp_sum, targets, weights)
        ctx.mark_non_differentiable(is_top1)
        return (weights * cross_entropy).sum(), is_top1

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, _grad_is_top1):
        shifted_exp, exp_sum, targets, weights = ctx.saved_tensors
        sample_grad = grad_loss * weights
        # d CE_i / d logits_ic = softmax_ic - [c == y_i]. Not in place in the saved buffer:
        # the graph may be retained and differentiated again (gradcheck does).
        grad_logits = shifted_exp * (sample_grad / exp_sum).unsqueeze(1)
        grad_logits.scatter_add_(1, targets.unsqueeze(1), -sample_grad.unsqueeze(1))
        return grad_logits, None, None


def cross_entropy_and_top1(logits: torch.Tensor, targets: torch.Tensor,
                           weights: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sum_i weights_i CE(logits_i, targets_i), is_top1) for logits (B, C), targets (B,), weights (B,).

    ``is_top1`` (B,) bool: the target's logit is larger than every other (a tie is
    wrong). ``weights`` carries no gradient. Differentiable once w.r.t. ``logits``.
    """
    return _CrossEntropyAndTop1.apply(logits, targets, weights.to(logits.dtype).detach())
