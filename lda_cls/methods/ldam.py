"""LDAM (label-distribution-aware margin, Cao et al. 2019), with or without deferred re-weighting.

Eq. 13 of the paper: L = -log( e^{s(z_y - Delta_y)} / (e^{s(z_y - Delta_y)} + sum_{j != y} e^{s z_j}) ),
Delta_y = C / n_y^(1/4), C chosen so that the largest margin is LOSS.LDAM_MAX_MARGIN (0.5), s = 30,
z = cosine logits (MODEL.CLASSIFIER cosine), as the official code (losses.py LDAMLoss) does. The
margins are a float32 buffer, as the official ``torch.cuda.FloatTensor(m_list)``. The cosine classifier's
initialisation follows the official NormedLinear in law, not draw for draw (classifiers.CosineClassifier).
"""
import torch

from .base import Method, register_method
from .ce import ClassWeightedLoss

__all__ = ["LDAMLoss", "LDAM", "ldam_margins"]


def ldam_margins(class_counts, max_margin: float) -> torch.Tensor:
    margins = torch.as_tensor(class_counts, dtype=torch.float64).clamp(min=1).pow(-0.25)
    return (margins * (max_margin / margins.max())).float()


class LDAMLoss(ClassWeightedLoss):
    def __init__(self, class_counts, max_margin: float = 0.5, scale: float = 30.0):
        super().__init__(len(class_counts))
        if max_margin <= 0 or scale <= 0:
            raise ValueError(f"LDAM needs LOSS.LDAM_MAX_MARGIN > 0 and LOSS.LDAM_SCALE > 0, got {max_margin}, {scale}")
        self.scale = float(scale)
        self.register_buffer("margins", ldam_margins(class_counts, max_margin))

    def per_sample(self, logits, targets):
        # Subtract Delta_y from the target logit only: one scatter, no mask tensor.
        shifted = logits.scatter_add(1, targets.unsqueeze(1), -self.margins[targets].unsqueeze(1))
        return torch.nn.functional.cross_entropy(self.scale * shifted, targets, reduction="none")

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


@register_method("ldam", "ldam_drw")
class LDAM(Method):
    def build_criterion(self):
        if self.cfg.MODEL.CLASSIFIER != "cosine":
            raise ValueError(f"METHOD {self.cfg.METHOD}: LDAM's margins act on cosine logits; set MODEL.CLASSIFIER "
                             f"cosine (configs/cls/methods/{self.cfg.METHOD}.yaml does), got "
                             f"{self.cfg.MODEL.CLASSIFIER!r}")
        return LDAMLoss(self.class_counts, self.cfg.LOSS.LDAM_MAX_MARGIN, self.cfg.LOSS.LDAM_SCALE)
