"""cb_focal against Cui et al.'s released code, transcribed from TensorFlow to torch ops.

richardaecn/class-balanced-loss @ 302f8afe16e5f7430e9a4e705b65b3c0d4ee0bd1, src/cifar_main.py:
``focal_loss`` (sigmoid_cross_entropy_with_logits, the stable modulator, sum, / reduce_sum(labels)),
``_tower_fn`` (a sample's weight w_{y_i} tiled over its C columns) and ``main`` (effective-number
weights normalised to sum to C); @ 0ab6eb775c312360704a66c969a7b660f7efc29e, src/model_base.py
``_fully_connected`` (bias_initializer -log(C - 1) for the sigmoid / focal losses).
"""
import math

import numpy as np
import pytest
import torch

from lda_cls.config import get_cfg
from lda_cls.methods import build_method
from lda_cls.methods.class_weights import class_weights
from lda_cls.train import METHOD_CONFIG_DIR

COUNTS = [60, 20, 7, 1]  # the last class has one training sample
TARGETS = torch.tensor([0, 0, 1, 2, 3, 0, 1])


def cui_weights(img_num_per_cls, beta):
    effective_num = 1.0 - np.power(beta, img_num_per_cls)
    weights = (1.0 - beta) / np.array(effective_num)
    return weights / np.sum(weights) * len(img_num_per_cls)


def cui_focal_loss(labels, logits, alpha, gamma):
    # tf.nn.sigmoid_cross_entropy_with_logits: max(z, 0) - z t + log(1 + exp(-|z|))
    cross_entropy = logits.clamp(min=0) - logits * labels + torch.log1p(torch.exp(-logits.abs()))
    modulator = torch.exp(-gamma * labels * logits - gamma * torch.log1p(torch.exp(-1.0 * logits)))
    return (alpha * modulator * cross_entropy).sum() / labels.sum()


def cui_tower_loss(logits, targets, weights, gamma):
    one_hot = torch.nn.functional.one_hot(targets, logits.shape[1]).to(logits.dtype)
    per_sample = (torch.as_tensor(weights, dtype=logits.dtype).unsqueeze(0) * one_hot).sum(1, keepdim=True)
    return cui_focal_loss(one_hot, logits, per_sample.expand_as(logits), gamma)


def project_criterion():
    cfg = get_cfg()
    cfg.merge_from_file(str(METHOD_CONFIG_DIR / "cb_focal.yaml"))
    criterion = build_method(cfg, COUNTS).build_criterion().double()
    criterion.set_class_weights(class_weights("effective", COUNTS, cfg.REWEIGHT.BETA))  # what the hook sets
    return cfg, criterion


def test_class_weights_are_cuis():
    cfg, criterion = project_criterion()
    assert criterion.class_weights.tolist() == pytest.approx(cui_weights(COUNTS, 0.9999).tolist(), rel=1e-6)


@pytest.mark.parametrize("gamma", [1.0, 2.0, 0.0])
def test_value_and_gradient_equal_cuis_loss(gamma):
    cfg, criterion = project_criterion()
    criterion.gamma = gamma
    torch.manual_seed(0)
    logits = (2 * torch.randn(len(TARGETS), len(COUNTS), dtype=torch.float64)).requires_grad_()
    ours = criterion({"logits": logits}, TARGETS)["loss"]
    (grad_ours,) = torch.autograd.grad(ours, logits)
    reference_logits = logits.detach().clone().requires_grad_()
    theirs = cui_tower_loss(reference_logits, TARGETS, cui_weights(COUNTS, 0.9999), gamma)
    (grad_theirs,) = torch.autograd.grad(theirs, reference_logits)
    # The project's weights are a float32 buffer: agreement to float32 precision, not float64's.
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert torch.allclose(grad_ours, grad_theirs, rtol=1e-6, atol=1e-9)


def test_the_classifier_bias_starts_at_minus_log_c_minus_1():
    from lda_cls import build_model

    cfg, _ = project_criterion()
    cfg.METHOD = "cb_focal"
    model = build_model(cfg, len(COUNTS))

    class Trainer:  # what Method.prepare reads
        pass

    trainer = Trainer()
    trainer.model = model
    build_method(cfg, COUNTS).prepare(trainer)
    assert model.head.balanced.bias.tolist() == pytest.approx([-math.log(len(COUNTS) - 1)] * len(COUNTS))
    # Every class starts at p = 1 / C (Cui et al.'s rationale) when the features carry no signal yet.
    assert torch.sigmoid(model.head.balanced.bias).tolist() == pytest.approx([1 / len(COUNTS)] * len(COUNTS))
