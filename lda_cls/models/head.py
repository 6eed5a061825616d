"""The LDA head on the pooled backbone feature (paper Sec. 3, Fig. 2).

* ``unbalanced``: h', trained on the long-tailed source distribution (R_s, Eq. 5);
* ``balanced``:   h, trained with class weights towards the balanced target (R_u);
  the only classifier used at test time;
* ``projection``: p, whose output the intra/inter divergence (Eq. 7, 8) acts on.

Layouts (``layout``; a method names its own, ``Method.head_layout``): "lda" has all three; "ce" only ``balanced``, the single classifier of
every other compared method (lda_cls/methods); "projection" has ``balanced`` and ``projection``
(a single-classifier loss with the divergence terms, e.g. Balanced Softmax + D.M).
``classifier`` names h's kind (lda_cls/models/classifiers.py).
"""
from typing import Dict

import torch
from torch import nn

from .classifiers import build_classifier

__all__ = ["LDAHead", "HEAD_LAYOUTS"]

HEAD_LAYOUTS = ("lda", "ce", "projection")


class LDAHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, layout: str = "lda", projection: bool = True,
                 projection_dim: int = 128, bias: bool = True, classifier: str = "linear"):
        super().__init__()
        if layout not in HEAD_LAYOUTS:
            raise ValueError(f"head layout must be 'lda' (h', h, p), 'ce' (h only) or 'projection' (h, p), "
                             f"got {layout!r}")
        self.balanced = build_classifier(classifier, in_features, num_classes, bias=bias)
        self.unbalanced = nn.Linear(in_features, num_classes, bias=bias) if layout == "lda" else None
        with_projection = layout == "projection" or (layout == "lda" and projection)
        self.projection = nn.Linear(in_features, projection_dim) if with_projection else None

    def forward(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        outputs = {"logits": self.balanced(features), "features": features}
        if self.unbalanced is not None:
            outputs["unbalanced_logits"] = self.unbalanced(features)
        if self.projection is not None:
            outputs["projection"] = self.projection(features)
        return outputs
