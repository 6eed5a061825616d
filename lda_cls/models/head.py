"""The LDA head on the pooled backbone feature (paper Sec. 3, Fig. 2).

* ``unbalanced``: h', trained on the long-tailed source distribution (R_s, Eq. 5);
* ``balanced``:   h, trained with class weights towards the balanced target (R_u);
  the only classifier used at test time;
* ``projection``: p, whose output the intra/inter divergence (Eq. 7, 8) acts on.

With ``method="ce"`` only ``balanced`` exists: the single classifier of every other
compared method (lda_cls/methods). ``classifier`` names its kind (lda_cls/models/classifiers.py).
"""
from typing import Dict

import torch
from torch import nn

from .classifiers import build_classifier

__all__ = ["LDAHead"]


class LDAHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, method: str = "lda", projection: bool = True,
                 projection_dim: int = 128, bias: bool = True, classifier: str = "linear"):
        super().__init__()
        if method not in ("lda", "ce"):
            raise ValueError(f"head layout must be 'lda' (h', h, p) or 'ce' (h only), got {method!r}")
        self.method = method
        self.balanced = build_classifier(classifier, in_features, num_classes, bias=bias)
        self.unbalanced = nn.Linear(in_features, num_classes, bias=bias) if method == "lda" else None
        self.projection = nn.Linear(in_features, projection_dim) if method == "lda" and projection else None

    def forward(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        outputs = {"logits": self.balanced(features), "features": features}
        if self.unbalanced is not None:
            outputs["unbalanced_logits"] = self.unbalanced(features)
        if self.projection is not None:
            outputs["projection"] = self.projection(features)
        return outputs
