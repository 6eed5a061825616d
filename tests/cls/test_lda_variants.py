"""The LDA variants (lda_cls/methods/lda.py): their losses by hand, gradients, heads and configs."""
import math

import pytest
import torch

from lda_cls.config import get_cfg
from lda_cls.methods import build_method
from lda_cls.methods.lda import BalancedSoftmaxWithDivergence, LDACriterion
from lda_cls.models import build_model
from lda_cls.train import METHOD_CONFIG_DIR
from lda_core import class_divergence

COUNTS = [50, 10, 2]
N = sum(COUNTS)


def method_cfg(method):
    cfg = get_cfg()
    cfg.merge_from_file(str(METHOD_CONFIG_DIR / f"{method}.yaml"))
    cfg.METHOD = method
    return cfg


def test_balanced_softmax_dm_is_balanced_softmax_plus_beta_times_the_divergence():
    logits = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 1.0]])
    projection = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    targets = torch.tensor([0, 1, 2, 0])
    loss = BalancedSoftmaxWithDivergence(COUNTS, beta=0.5, margin=1.0)(
        {"logits": logits, "projection": projection}, targets)
    # Ren et al. Eq. 4: -log(n_y e^{z_y} / sum_j n_j e^{z_j}), batch mean.
    by_hand = sum(-math.log(COUNTS[y] * math.exp(z[y]) / sum(n * math.exp(v) for n, v in zip(COUNTS, z)))
                  for z, y in zip(logits.tolist(), targets.tolist())) / 4
    intra, inter = class_divergence(projection, targets, margin=1.0)
    assert loss["loss_balanced"].item() == pytest.approx(by_hand, rel=1e-6)
    assert loss["loss"].item() == pytest.approx(by_hand + 0.5 * (intra + inter).item(), rel=1e-6)
    assert (intra + inter).item() > 0.1  # the divergence term takes part


def test_balanced_softmax_dm_gradcheck():
    torch.manual_seed(0)
    criterion = BalancedSoftmaxWithDivergence(COUNTS, beta=0.5, margin=1.0).double()
    targets = torch.tensor([0, 0, 1, 2, 0, 1])
    logits = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    projection = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda z, p: criterion({"logits": z, "projection": p}, targets)["loss"], (logits, projection))


@pytest.mark.parametrize("method, outputs", [("balanced_softmax_dm", {"logits", "features", "projection"}),
                                             ("lda_la", {"logits", "features", "unbalanced_logits", "projection"}),
                                             ("lda_la_fixed_alpha",
                                              {"logits", "features", "unbalanced_logits", "projection"})])
def test_each_variant_builds_its_head(method, outputs):
    cfg = method_cfg(method)
    model = build_model(cfg, 10)
    out = model(torch.randn(2, cfg.MODEL.IN_CHANS, cfg.INPUT.SIZE, cfg.INPUT.SIZE))
    assert set(out) == outputs
    build_method(cfg, [5] * 10).build_criterion()(out, torch.tensor([0, 1]))["loss"].backward()


def test_lda_la_configs_select_the_logit_adjusted_risk_and_their_coefficients():
    paper = LDACriterion(method_cfg("lda_la"), COUNTS).lda_loss
    assert paper.balanced_risk == "logit_adjusted" and paper.scaling == "official"
    assert paper.balanced_factor == 2.0 and paper.balance.fixed_alpha is None  # lda's alpha and factor
    fixed = LDACriterion(method_cfg("lda_la_fixed_alpha"), COUNTS).lda_loss
    assert fixed.balanced_risk == "logit_adjusted" and fixed.scaling == "calibrated"
    out = fixed(torch.zeros(4, 3), torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))
    # Equal weight of the two normalised risks, whatever delta acc: coefficient 1 throughout.
    assert out["balanced_coefficient"].item() == pytest.approx(1.0)
    assert out["loss"].item() == pytest.approx(math.log(3) + out["loss_balanced"].item(), rel=1e-6)
