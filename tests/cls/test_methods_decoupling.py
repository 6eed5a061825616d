"""Decoupled classifiers (Kang et al. 2020) on known weights, and NCM against a brute-force nearest mean.

Against the authors' code: tests/cls/test_reference_losses.py."""
from types import SimpleNamespace

import pytest
import torch

from lda_cls import get_cfg
from lda_cls.methods.decoupling import normalized_feature_sums, training_feature_mean
from lda_cls.methods.validation import validation_set
from lda_cls.models.classifiers import LWSClassifier, NCMClassifier, TauNormClassifier


def test_tau_normalisation_of_a_known_classifier():
    classifier = TauNormClassifier(2, 2)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))  # norms 3 and 1
        classifier.bias.fill_(5.0)  # ignored: the normalised classifier has no bias
    features = torch.tensor([[1.0, 1.5]])
    classifier.tau.fill_(0.0)  # no scaling: logits 3, 1.5 -> the head class
    assert classifier(features).tolist() == [[3.0, 1.5]]
    classifier.tau.fill_(1.0)  # unit rows: 1, 1.5 -> the tail class
    assert classifier(features).tolist() == [[1.0, 1.5]]
    classifier.tau.fill_(0.5)  # w_0 / 3^0.5 = (1.732, 0)
    assert classifier(features)[0].tolist() == pytest.approx([3 ** 0.5, 1.5])
    assert torch.allclose(classifier.effective_weight(0.5), torch.tensor([[3 ** 0.5, 0.0], [0.0, 1.0]]))


def test_lws_scales_each_class_logit():
    classifier = LWSClassifier(2, 2)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
        classifier.bias.copy_(torch.tensor([1.0, -1.0]))
        classifier.scales.copy_(torch.tensor([0.5, 2.0]))
    features = torch.tensor([[1.0, 1.5]])
    # f_y (w_y . x + b_y): 0.5 (3 + 1) = 2, 2 (1.5 - 1) = 1.
    assert classifier(features).tolist() == [[2.0, 1.0]]
    assert classifier.effective_weight().tolist() == [[1.5, 0.0], [0.0, 2.0]]
    loss = classifier(features).sum()
    loss.backward()
    # d/d f_y = w_y . x + b_y.
    assert classifier.scales.grad.tolist() == [4.0, 0.5]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ncm_predicts_the_nearest_centred_normalised_class_mean(metric):
    generator = torch.Generator().manual_seed(0)
    num_classes, dim = 4, 6
    train_features = torch.randn(40, dim, generator=generator) + 1.0  # not centred at 0: the centring counts
    train_targets = torch.arange(40) % num_classes
    feature_mean = training_feature_mean(train_features)
    sums, counts = normalized_feature_sums(train_features.double() - feature_mean, train_targets, num_classes)
    classifier = NCMClassifier(dim, num_classes, metric=metric)
    classifier.feature_mean.copy_(feature_mean.float())
    classifier.means.copy_((sums / counts.unsqueeze(1)).float())
    test_features = torch.randn(25, dim, generator=generator) + 1.0
    predictions = classifier(test_features).argmax(1)
    # Brute force (Kang et al.'s "cl2n"): centre on the training mean, normalise, average per class (no
    # re-normalisation), then the nearest mean one by one.
    centred = train_features - train_features.mean(0)
    unit = centred / centred.norm(dim=1, keepdim=True)
    means = [unit[train_targets == label].mean(0) for label in range(num_classes)]
    for features, predicted in zip(test_features, predictions):
        query = features - train_features.mean(0)
        query = query / query.norm()
        if metric == "cosine":
            scores = [float(query @ mean) for mean in means]
        else:
            scores = [-float(((query - mean) ** 2).sum()) for mean in means]
        assert int(predicted) == max(range(num_classes), key=lambda k: scores[k])


def test_tau_is_never_chosen_on_the_test_split():
    cfg = get_cfg()
    cfg.METHOD = "tau_norm"
    test_set = [0] * 5
    context = SimpleNamespace(val_set=test_set, test_set=test_set)  # a builder that hands the test split as val
    with pytest.raises(ValueError, match="choosing on test is not allowed"):
        validation_set(cfg, context)
    context = SimpleNamespace(val_set=None, test_set=test_set)  # a builder that says "no val split"
    with pytest.raises(ValueError, match="TAU_GRID"):
        validation_set(cfg, context)
    real_val = [1] * 3
    context = SimpleNamespace(val_set=real_val, test_set=test_set)
    assert validation_set(cfg, context)[0] is real_val
