"""The loss of ``cfg.METHOD``: built by its registered method (lda_cls/methods).

Kept as the one-line entry point it always was; ``LDACriterion`` moved to lda_cls/methods/lda.py
and the plain cross entropy to lda_cls/methods/ce.py.
"""
from typing import Sequence

from torch import nn

from .methods import build_method
from .methods.ce import CrossEntropyLoss as CrossEntropyCriterion
from .methods.lda import LDACriterion

__all__ = ["LDACriterion", "CrossEntropyCriterion", "build_criterion"]


def build_criterion(cfg, class_counts: Sequence[int]) -> nn.Module:
    return build_method(cfg, class_counts).build_criterion()
