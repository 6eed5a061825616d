"""The balance factor alpha of LDA (paper Eq. 6).

alpha = (delta acc)^gamma, where delta acc is the recent accuracy gap between the
unbalanced classifier h' and the balanced classifier h. "Recent" is a ring buffer
of the last ``window`` mini-batch accuracies, zero-initialised and averaged over
its full length (as in the official implementation, so alpha ramps up during the
first ``window`` steps instead of jumping on the first noisy batch).

Everything stays on the device: the buffer position is a tensor, writes use
tensor indices, and an empty batch is skipped with ``torch.where`` rather than an
``if`` on a device value, so updating alpha never synchronises with the host.
"""
from typing import Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from .arguments import finite_number, positive_integer


def _distributed_world() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_top1(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Whether the target's logit is larger than every other logit (a tie counts as wrong).

    ``argmax == target`` but for ties, and several times faster on CPUs, where
    argmax is not vectorised.
    """
    target_logit = logits.gather(1, targets.unsqueeze(1))
    others = logits.scatter(1, targets.unsqueeze(1), float("-inf"))
    return target_logit.squeeze(1) > others.amax(dim=1)


def correct_counts(unbalanced_correct: torch.Tensor, balanced_correct: torch.Tensor,
                   valid: Optional[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """(3,) counts of one batch: correct by h', correct by h, samples (only ``valid`` ones if given)."""
    flags = torch.stack([unbalanced_correct.bool(), balanced_correct.bool(),
                         torch.ones_like(unbalanced_correct, dtype=torch.bool)]).to(dtype)
    return flags.sum(dim=1) if valid is None else flags @ valid.to(dtype)


class AccuracyGapWindow(nn.Module):
    """Ring buffer of batch accuracies of h' and h, and the alpha derived from it.

    Args:
        window: L, the number of recent mini-batches averaged (Eq. 6).
        gamma: exponent of Eq. 6.
        percent: accuracies in percent (official scaling) or as fractions.
        fixed_alpha: if given, alpha is this constant (the paper's grid-search
            ablation); the buffer is still updated so delta acc can be logged.
    """

    def __init__(self, window: int = 100, gamma: float = 2.0, percent: bool = True,
                 fixed_alpha: Optional[float] = None):
        super().__init__()
        self.window = positive_integer("window (number of mini-batches)", window)
        self.gamma = finite_number("gamma", gamma, minimum=0.0)
        self.percent = bool(percent)
        self.fixed_alpha = None if fixed_alpha is None else finite_number("fixed_alpha", fixed_alpha, minimum=0.0)
        # Row 0: accuracy of h' (unbalanced), row 1: accuracy of h (balanced).
        self.register_buffer("accuracies", torch.zeros(2, self.window))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"window={self.window}, gamma={self.gamma}, percent={self.percent}, "
                f"fixed_alpha={self.fixed_alpha}")

    @torch.no_grad()
    def update(self, unbalanced_logits: torch.Tensor, balanced_logits: torch.Tensor,
               targets: torch.Tensor, valid: Optional[torch.Tensor] = None) -> None:
        """Write this batch's top-1 accuracies of h' and h (from their logits) into the ring buffer."""
        self.record(is_top1(unbalanced_logits, targets), is_top1(balanced_logits, targets), valid)

    @torch.no_grad()
    def record(self, unbalanced_correct: torch.Tensor, balanced_correct: torch.Tensor,
               valid: Optional[torch.Tensor] = None) -> None:
        """Write this batch's accuracies, from per-sample correctness (B,) of h' and h.

        ``valid`` (B,), optional, counts only those samples; a batch (over all
        ranks) without any leaves the buffer as it is.

        Under ``torch.distributed`` the correct counts are summed over ranks first,
        so every rank holds the same buffer and uses the same alpha.
        """
        counts = correct_counts(unbalanced_correct, balanced_correct, valid, self.accuracies.dtype)
        if _distributed_world():
            dist.all_reduce(counts)
        self.record_counts(counts)

    @torch.no_grad()
    def record_counts(self, counts: torch.Tensor) -> None:
        """Write one batch from its counts (3,): correct by h', correct by h, samples.

        The counts are taken as they are (already summed over ranks, if that is wanted).
        """
        counts = counts.to(self.accuracies.dtype)
        scale = 100.0 if self.percent else 1.0
        has_samples = counts[2] > 0
        batch_accuracy = scale * counts[:2] / counts[2].clamp(min=1)
        slot = self.num_updates % self.window
        current = self.accuracies.index_select(1, slot.view(1)).squeeze(1)
        self.accuracies.index_copy_(1, slot.view(1), torch.where(has_samples, batch_accuracy, current).view(2, 1))
        self.num_updates.add_(has_samples.long())

    def delta_acc(self) -> torch.Tensor:
        """Mean accuracy of h' minus mean accuracy of h over the window."""
        means = self.accuracies.mean(dim=1)
        return means[0] - means[1]

    def alpha(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(alpha, delta_acc); alpha = max(0, delta acc)^gamma, carrying no gradient."""
        delta_acc = self.delta_acc()
        if self.fixed_alpha is not None:
            alpha = torch.full_like(delta_acc, float(self.fixed_alpha))
        else:
            alpha = delta_acc.clamp(min=0).pow(self.gamma)
        return alpha, delta_acc
