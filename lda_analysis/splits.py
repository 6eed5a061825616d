"""The many / medium / few split of classes by their training counts: the one rule of the project.

The usual long-tailed protocol (Liu et al. 2019, and Table 1-3 of the paper): a class is many-shot
with more than 100 training images, few-shot with fewer than 20, medium-shot otherwise. LVIS v1
groups its categories the same way with its own bounds (rare 1-10, common 11-100, frequent > 100
training images). Training-time evaluation (lda_cls/evaluation.py), ``lda_cls.stats``, the analysis
figures and projects/LDA/tools/analyze.py all split through ``split_indices``.
"""
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

__all__ = ["SPLITS", "MANY_ABOVE", "FEW_BELOW", "SplitRule", "STANDARD_SPLITS", "LVIS_SPLITS", "split_indices",
           "class_splits"]

SPLITS = ("many", "medium", "few")
MANY_ABOVE = 100  # a class is many-shot with more than this many training images
FEW_BELOW = 20  # ... and few-shot with fewer than this many


@dataclass(frozen=True)
class SplitRule:
    """How training counts map to the three splits, and what the splits are called.

    A class is "many" with more than ``many_above`` training samples, "few" with
    fewer than ``few_below``, "medium" otherwise. The keys stay many / medium /
    few everywhere; ``names`` are what figures print (LVIS: frequent / common / rare).
    """

    many_above: int = MANY_ABOVE
    few_below: int = FEW_BELOW
    names: Tuple[str, str, str] = ("many-shot", "medium-shot", "few-shot")
    unit: str = "train images"

    def label(self, split: str) -> str:
        """Legend text of a split, with its count range, e.g. "few-shot (<20 train images)"."""
        ranges = {"many": f">{self.many_above}", "medium": f"{self.few_below}-{self.many_above}",
                  "few": f"<{self.few_below}"}
        return f"{self.names[SPLITS.index(split)]} ({ranges[split]} {self.unit})"


STANDARD_SPLITS = SplitRule()
# LVIS v1's frequency groups by training images: rare 1-10, common 11-100, frequent > 100.
LVIS_SPLITS = SplitRule(many_above=100, few_below=11, names=("frequent", "common", "rare"))


def _counts_array(class_counts) -> np.ndarray:
    if hasattr(class_counts, "detach"):  # a torch tensor, possibly on a GPU
        class_counts = class_counts.detach().cpu()
    return np.asarray(class_counts)


def split_indices(class_counts: Sequence[int], rule: SplitRule = STANDARD_SPLITS) -> np.ndarray:
    """The index into SPLITS of each class: 0 = many, 1 = medium, 2 = few."""
    counts = _counts_array(class_counts)
    return np.where(counts > rule.many_above, 0, np.where(counts < rule.few_below, 2, 1))


def class_splits(class_counts: Sequence[int], rule: SplitRule = STANDARD_SPLITS) -> np.ndarray:
    """The split key ("many", "medium" or "few") of each class, from its training count."""
    return np.asarray(SPLITS)[split_indices(class_counts, rule)]
