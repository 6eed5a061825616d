"""The LDA variants (lda_cls/methods/lda.py): their losses by hand, gradients, heads and configs."""
import math

import pytest
import torch

from lda_cls.config import get_cfg
from lda_cls.methods import build_method
from lda_cls.methods.lda import BalancedSoftmaxWithDivergence, LDACriterion
from lda_cls import build_model
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


def _ddp_worker(rank, world_size, port, results):
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        x, targets = _global_batch()
        mine = slice(rank * 6, (rank + 1) * 6)
        for name, criterion in _criteria():
            model = DistributedDataParallel(_TinyModel().double(), find_unused_parameters=True)  # h' only: no p
            criterion(model(x[mine]), targets[mine])["loss"].backward()
            results[(name, rank)] = [_grad(p) for p in model.module.parameters()]
    finally:
        dist.destroy_process_group()


def _grad(parameter):
    return torch.zeros_like(parameter) if parameter.grad is None else parameter.grad.clone()


class _TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk, self.h, self.p = torch.nn.Linear(5, 6), torch.nn.Linear(6, 3), torch.nn.Linear(6, 4)

    def forward(self, x):
        features = torch.tanh(self.trunk(x))
        return {"logits": self.h(features), "projection": self.p(features), "features": features}


def _global_batch():
    generator = torch.Generator().manual_seed(1)
    targets = torch.tensor([0, 0, 1, 2, 0, 1, 0, 2, 0, 0, 1, 0])  # rank 1's half has class 2 once
    x = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    x[:, :3] += 2 * torch.nn.functional.one_hot(targets, 3)
    return x, targets


def _criteria():
    from lda_cls.methods.ce import SigmoidFocalLoss
    from lda_cls.methods.lda import SourceRiskWithDivergence

    cb_focal = SigmoidFocalLoss(3, gamma=1.0).double()
    cb_focal.set_class_weights(torch.tensor([0.2, 0.8, 2.0]))
    return [("balanced_softmax_dm", BalancedSoftmaxWithDivergence(COUNTS, beta=0.5, margin=1.0).double()),
            ("lda_h_prime_only", SourceRiskWithDivergence(beta=0.5, margin=1.0)), ("cb_focal", cb_focal)]


BATCH_STATISTIC = {"balanced_softmax_dm", "lda_h_prime_only"}  # class centres of the batch (Eq. 7-8)


def test_two_ddp_ranks_give_the_gradients_of_one_process_on_the_global_batch():
    """The divergence's class centres come from both ranks' projections, as on one process; cb_focal's
    per-rank sum / B, averaged by DDP, is the global sum / (2 B)."""
    import torch.multiprocessing as mp

    from tests.helpers import free_port

    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, free_port(), results), nprocs=2, join=True)
    x, targets = _global_batch()
    for name, criterion in _criteria():
        model = _TinyModel().double()
        criterion(model(x), targets)["loss"].backward()
        for rank in range(2):
            for ours, reference in zip(results[(name, rank)], model.parameters()):
                torch.testing.assert_close(ours, _grad(reference), rtol=1e-10, atol=1e-12)
        if name not in BATCH_STATISTIC:
            continue  # cb_focal: a per-sample sum over the global batch size, nothing to gather
        # The rank-local divergence would differ: the check can fail.
        local = _TinyModel().double()
        half = criterion(local(x[:6]), targets[:6])["loss"] + criterion(local(x[6:]), targets[6:])["loss"]
        (half / 2).backward()
        assert not torch.allclose(_grad(local.trunk.weight), _grad(model.trunk.weight), atol=1e-6), name
