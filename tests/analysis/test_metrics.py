"""lda_analysis.metrics on tiny cases with hand-computed answers."""
import math

import numpy as np
import pytest
import torch

from lda_analysis import metrics


def test_samples_per_class_keeps_cdd_sets_near_the_budget():
    assert metrics.samples_per_class(10) == 100
    assert metrics.samples_per_class(1000) == 10
    assert metrics.samples_per_class(100_000) == 2
    assert metrics.samples_per_class(1000, requested=7) == 7


def test_frequency_order_is_descending_and_stable_on_ties():
    assert metrics.frequency_order([5, 50, 5, 500]).tolist() == [3, 1, 0, 2]


def test_weight_norms_are_row_l2_norms():
    norms = metrics.weight_norms(torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_allclose(norms, [5.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="num_classes, dim"):
        metrics.weight_norms(np.ones(3))


def test_confusion_matrix_and_per_class_accuracy_on_a_hand_built_case():
    targets = [0, 0, 0, 0, 1, 1, 2]
    predictions = [0, 0, 1, 2, 1, 0, 2]
    confusion = metrics.confusion_matrix(targets, predictions, num_classes=4)
    expected = np.array([[2, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(confusion, expected)
    accuracy = metrics.per_class_accuracy(confusion)
    np.testing.assert_allclose(accuracy[:3], [50.0, 50.0, 100.0])
    assert math.isnan(accuracy[3])  # class 3 has no test image
    with pytest.raises(ValueError, match=r"predictions must lie in \[0, 4\)"):
        metrics.confusion_matrix([0], [4], num_classes=4)


def test_split_means_average_over_classes():
    means = metrics.split_means([90.0, 80.0, 60.0, 20.0, np.nan], class_counts=[200, 150, 50, 10, 5])
    assert means["many"] == pytest.approx(85.0)
    assert means["medium"] == pytest.approx(60.0)
    assert means["few"] == pytest.approx(20.0)  # the NaN class is skipped
    assert means["all"] == pytest.approx(62.5)
    assert math.isnan(metrics.split_means([1.0, 2.0], [500, 300])["few"])  # no few-shot class


def test_error_flow_counts_few_shot_errors_predicted_as_many_shot():
    # Classes: 0 many (200 images), 1 medium (50), 2 and 3 few (10, 5).
    confusion = np.array([
        [9, 1, 0, 0],  # many: 1 error, into medium
        [2, 8, 0, 0],  # medium: 2 errors, into many
        [3, 1, 4, 0],  # few: 3 to many, 1 to medium
        [1, 0, 2, 5],  # few: 1 to many, 2 to the other few class
    ])
    flow = metrics.error_flow(confusion, class_counts=[200, 50, 10, 5])
    assert flow["few"]["errors"] == 7
    assert flow["few"]["many"] == pytest.approx(4 / 7)
    assert flow["few"]["medium"] == pytest.approx(1 / 7)
    assert flow["few"]["few"] == pytest.approx(2 / 7)
    assert flow["medium"]["many"] == pytest.approx(1.0)
    assert flow["many"]["medium"] == pytest.approx(1.0)
    no_errors = metrics.error_flow(np.eye(4, dtype=int), [200, 50, 10, 5])
    assert no_errors["few"]["errors"] == 0 and math.isnan(no_errors["few"]["many"])


def test_orthogonal_class_means_give_inter_distance_one():
    features = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    result = metrics.intra_inter_distance(features, [0, 0, 1, 1])
    assert result["d_inter"] == pytest.approx(1.0)
    assert result["d_intra"] == pytest.approx(0.0, abs=1e-12)
    assert result["ratio"] == pytest.approx(0.0, abs=1e-12)


def test_inter_distance_averages_ordered_pairs_of_class_means():
    # Means e1, e2, -e1: cosine distances 1, 2, 1 -> mean 4/3.
    features = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    result = metrics.intra_inter_distance(features, [0, 1, 2])
    assert result["d_inter"] == pytest.approx(4 / 3)
    assert math.isnan(result["d_intra"])  # no class has two samples


def test_intra_distance_is_mean_cosine_distance_to_the_class_mean():
    features = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 5.0], [0.0, 1.0], [-4.0, 0.0]])
    result = metrics.intra_inter_distance(features, [0, 0, 1, 1, 2])
    centre = np.array([1.0, 0.5])
    cosines = [centre[0] / np.linalg.norm(centre), (centre[0] + centre[1]) / (np.sqrt(2) * np.linalg.norm(centre))]
    expected_class_0 = 1 - np.mean(cosines)
    np.testing.assert_allclose(result["per_class_intra"][:2], [expected_class_0, 0.0], atol=1e-12)
    assert math.isnan(result["per_class_intra"][2])  # one sample: no spread
    assert result["d_intra"] == pytest.approx(expected_class_0 / 2)
    # Cosine distances ignore the feature scale.
    scaled = metrics.intra_inter_distance(7 * features, [0, 0, 1, 1, 2])
    assert scaled["ratio"] == pytest.approx(result["ratio"])


def test_gaussian_bandwidths_scale_the_mean_squared_distance():
    # Two points 2 apart: mean squared distance between distinct rows is 4.
    bandwidths = metrics.gaussian_bandwidths(np.array([[0.0], [2.0]]))
    np.testing.assert_allclose(bandwidths, [1.0, 2.0, 4.0, 8.0, 16.0])
    three = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])  # squared distances 1, 4, 5
    np.testing.assert_allclose(metrics.gaussian_bandwidths(three, kernel_num=1), [10.0 / 3])
    with pytest.raises(ValueError, match="identical"):
        metrics.gaussian_bandwidths(np.ones((4, 3)))


def test_identical_train_and_test_features_have_no_intra_class_discrepancy():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(60, 8, generator=generator)
    labels = torch.arange(60) % 4
    result = metrics.contrastive_domain_discrepancy(features, labels, features, labels, unbiased=False)
    assert result["intra"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(result["per_class_intra"], 0.0, atol=1e-12)
    assert result["inter"] > 0
    assert result["cdd"] == pytest.approx(-result["inter"])
    # The unbiased estimate of identical sets is slightly negative: -2 (1 - mean off-diagonal kernel) / n.
    unbiased = metrics.contrastive_domain_discrepancy(features, labels, features, labels)
    assert -2 / 15 < unbiased["intra"] < 0


def test_discrepancy_of_single_points_matches_the_kernel_formula():
    # One class, source {0}, target {d}: MMD^2 = k(0,0) + k(d,d) - 2 k(0,d) = 2 - 2 mean_k exp(-d^2/s_k).
    bandwidths = [0.5, 2.0]
    result = metrics.contrastive_domain_discrepancy([[0.0]], [0], [[1.5]], [0], bandwidths=bandwidths,
                                                    unbiased=False)
    expected = 2 - 2 * np.mean(np.exp(-1.5 ** 2 / np.array(bandwidths)))
    assert result["intra"] == pytest.approx(expected)
    assert math.isnan(result["inter"])  # one class: no pair
    # The unbiased estimate needs two samples of the class in each set.
    assert math.isnan(metrics.contrastive_domain_discrepancy([[0.0]], [0], [[1.5]], [0], bandwidths=bandwidths)["intra"])


def test_well_separated_classes_give_inter_discrepancy_two():
    source = np.array([[0.0], [10.0]])
    result = metrics.contrastive_domain_discrepancy(source, [0, 1], source.copy(), [0, 1], bandwidths=[1.0],
                                                    unbiased=False)
    assert result["intra"] == pytest.approx(0.0, abs=1e-12)
    assert result["inter"] == pytest.approx(2.0)  # 1 + 1 - 2 exp(-100)
    assert result["cdd"] == pytest.approx(-2.0)


def _brute_force_cdd(source, source_labels, target, target_labels, bandwidths, unbiased):
    def kernel(a, b):
        return np.mean([np.exp(-np.sum((a - b) ** 2) / s) for s in bandwidths])

    def mean_kernel(xs, ys, same):
        return np.mean([kernel(x, y) for i, x in enumerate(xs) for j, y in enumerate(ys)
                        if not (same and unbiased and i == j)])

    classes = sorted(set(source_labels) & set(target_labels))
    s = {c: source[source_labels == c] for c in classes}
    t = {c: target[target_labels == c] for c in classes}
    d = {(a, b): mean_kernel(s[a], s[a], True) + mean_kernel(t[b], t[b], True) - 2 * mean_kernel(s[a], t[b], False)
         for a in classes for b in classes}
    intra = np.mean([d[c, c] for c in classes])
    inter = np.mean([d[a, b] for a in classes for b in classes if a != b])
    return intra, inter


@pytest.mark.parametrize("unbiased", [True, False])
def test_discrepancy_matches_a_brute_force_loop_and_is_chunk_independent(unbiased):
    rng = np.random.default_rng(1)
    source, target = rng.normal(size=(13, 3)), rng.normal(size=(11, 3)) + 0.5
    source_labels = np.array([0, 1, 2] * 4 + [0])
    target_labels = np.array([0, 1, 2] * 3 + [3, 0])  # class 3 only in the test set: ignored
    bandwidths = metrics.gaussian_bandwidths(np.concatenate([source, target]))
    intra, inter = _brute_force_cdd(source, source_labels, target, target_labels, bandwidths, unbiased)
    for max_elements in (11, 1 << 20):  # one row of kernel values at a time, or all at once
        result = metrics.contrastive_domain_discrepancy(source, source_labels, target, target_labels,
                                                        unbiased=unbiased, max_elements=max_elements)
        assert result["intra"] == pytest.approx(intra, rel=1e-9)
        assert result["inter"] == pytest.approx(inter, rel=1e-9)
        assert math.isnan(result["per_class_intra"][3])


def test_unbiased_discrepancy_is_not_inflated_for_classes_with_few_samples():
    # Train and test features of both classes come from one distribution; class 1 has 5 training samples.
    # Averaged over 40 draws, the biased estimate of class 1 shows its (1 - E k) (1/5 + 1/100) bias,
    # the unbiased one stays at 0 like class 0 does.
    source_labels = np.array([0] * 100 + [1] * 5)
    target_labels = np.array([0] * 100 + [1] * 100)
    means = np.array([[0.0, 0.0], [3.0, 3.0]])
    estimates = {True: [], False: []}
    for seed in range(40):
        rng = np.random.default_rng(seed)
        source = means[source_labels] + rng.normal(size=(105, 2))
        target = means[target_labels] + rng.normal(size=(200, 2))
        for unbiased in (True, False):  # a fixed kernel, for which the U-statistic is exactly unbiased
            estimates[unbiased].append(metrics.contrastive_domain_discrepancy(
                source, source_labels, target, target_labels, bandwidths=[1.0, 4.0],
                unbiased=unbiased)["per_class_intra"])
    biased, unbiased = np.asarray(estimates[False]), np.asarray(estimates[True])
    standard_error = unbiased.std(axis=0) / np.sqrt(len(unbiased))
    assert np.all(np.abs(unbiased.mean(axis=0)) < 4 * standard_error)  # 0 within noise, both classes
    assert biased[:, 1].mean() > 0.05 and biased[:, 1].mean() > 10 * standard_error[1]


def test_discrepancy_grows_with_a_train_test_shift_and_ignores_the_feature_scale():
    rng = np.random.default_rng(2)
    features, labels = rng.normal(size=(40, 4)), np.arange(40) % 2
    other = rng.normal(size=(40, 4))
    small = metrics.contrastive_domain_discrepancy(features, labels, other + 0.3, labels)["intra"]
    large = metrics.contrastive_domain_discrepancy(features, labels, other + 1.5, labels)["intra"]
    assert small < large
    rescaled = metrics.contrastive_domain_discrepancy(5 * features, labels, 5 * (other + 0.3), labels)["intra"]
    assert rescaled == pytest.approx(small)


def test_subsample_per_class_caps_each_class_and_is_seeded():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    keep = metrics.subsample_per_class(labels, max_per_class=4, seed=0)
    assert np.bincount(labels[keep]).tolist() == [4, 3, 4]
    assert np.array_equal(keep, np.sort(keep))
    assert np.array_equal(keep, metrics.subsample_per_class(labels, max_per_class=4, seed=0))


def test_tsne_keeps_separated_classifier_clusters_apart():
    rng = np.random.default_rng(3)
    centres = np.eye(3, 16) * 50
    weights = np.concatenate([c + rng.normal(size=(5, 16)) for c in centres])
    embedding = metrics.tsne_embedding(weights, seed=0)
    assert embedding.shape == (15, 2)
    distances = np.linalg.norm(embedding[:, None] - embedding[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    assert np.array_equal(nearest // 5, np.arange(15) // 5)
    np.testing.assert_allclose(embedding, metrics.tsne_embedding(weights, seed=0))
