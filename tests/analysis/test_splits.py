"""lda_analysis.splits: the one many / medium / few rule, and lda_cls's integer form of it."""
import numpy as np
import torch

from lda_analysis import splits
from lda_cls.data import SHOT_NAMES, shot_groups


def test_class_splits_use_the_many_medium_few_thresholds():
    result = splits.class_splits([5000, 101, 100, 20, 19, 0])
    assert result.tolist() == ["many", "many", "medium", "medium", "few", "few"]


def test_lvis_split_rule_matches_lvis_frequency_groups():
    result = splits.class_splits([101, 100, 11, 10, 1], splits.LVIS_SPLITS)
    assert result.tolist() == ["many", "medium", "medium", "few", "few"]  # frequent, common, common, rare, rare
    assert splits.LVIS_SPLITS.label("few") == "rare (<11 train images)"
    assert splits.STANDARD_SPLITS.label("medium") == "medium-shot (20-100 train images)"


def test_training_evaluation_and_the_figures_split_every_class_alike():
    """lda_cls's shot_groups (evaluation, stats) is class_splits as indices, for any thresholds."""
    counts = np.random.default_rng(0).integers(0, 300, 500)
    for many_above, few_below in ((100, 20), (100, 11), (50, 5)):
        rule = splits.SplitRule(many_above=many_above, few_below=few_below)
        named = np.asarray(SHOT_NAMES)[shot_groups(counts, many_above, few_below)]
        np.testing.assert_array_equal(named, splits.class_splits(counts, rule))


def test_counts_may_be_a_tensor_or_empty():
    assert splits.split_indices(torch.tensor([150, 50, 5])).tolist() == [0, 1, 2]
    assert splits.class_splits([]).tolist() == []
