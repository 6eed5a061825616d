"""Under DDP, LDALoss gives the gradients of one process on the concatenated global batch.

Each rank gets a slice of one batch (some with more valid samples than others), wraps a
small model in DistributedDataParallel (gradients averaged over ranks, as in training) and
back-propagates LDALoss. The parameter gradients must equal those of a single process that
sees the whole batch (float64, tight tolerance), for every scaling, with and without the
projected features and the ``valid`` mask, for both balanced risks (importance-weighted and
logit-adjusted), for 2 and 3 ranks. With ``global_batch=False``
(each rank's local loss) they must not: that is the bug this guards against.
"""
import itertools
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lda_core import LDALoss

from ..helpers import free_port

NUM_CLASSES = 5
COUNTS = [40, 20, 9, 4, 1]
PER_RANK = 6
CASES = [dict(scaling=s, features=f, valid=v, balanced_risk=r)
         for s, f, v, r in itertools.product(("official", "normalized", "calibrated"), (False, True), (False, True),
                                             ("importance_weighted", "logit_adjusted"))]


class TinyHead(nn.Module):
    """Shared trunk, then h', h and the projection p, as in LDA."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(8, 8)
        self.unbalanced = nn.Linear(8, NUM_CLASSES)
        self.balanced = nn.Linear(8, NUM_CLASSES)
        self.projection = nn.Linear(8, 3)
        with torch.no_grad():
            # h' reads the class off the inputs, h is random: h' is more accurate, so alpha > 0
            # and the balanced term takes part in the gradients.
            self.trunk.weight.add_(2 * torch.eye(8))
            self.unbalanced.weight[:, :NUM_CLASSES].add_(4 * torch.eye(NUM_CLASSES))

    def forward(self, x):
        z = torch.tanh(self.trunk(x))
        return self.unbalanced(z), self.balanced(z), self.projection(z)


def global_batch(world_size: int):
    generator = torch.Generator().manual_seed(world_size)
    size = PER_RANK * world_size
    targets = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
    x = 0.3 * torch.randn(size, 8, generator=generator, dtype=torch.float64)
    x[:, :NUM_CLASSES] += 2 * torch.nn.functional.one_hot(targets, NUM_CLASSES)
    # Uneven valid samples per rank: rank r keeps its first PER_RANK - 2 r samples (rank 2 keeps 2).
    valid = (torch.arange(size) % PER_RANK) < (PER_RANK - 2 * (torch.arange(size) // PER_RANK))
    return x, targets, valid


def run_steps(model, criterion, x, targets, valid, case, steps=2):
    """Two steps (the second sees a non-zero alpha from the first); returns the grads of the last."""
    for _ in range(steps):
        model.zero_grad()
        unbalanced, balanced, projection = model(x)
        out = criterion(unbalanced, balanced, targets, features=projection if case["features"] else None,
                        valid=valid if case["valid"] else None)
        out["loss"].backward()
    module = getattr(model, "module", model)
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()]
    return grads, out["alpha"].item(), out["loss"].item()


def make_criterion(case, global_batch=True):
    # Large factors so the balanced and divergence terms weigh as much as h' in the gradients.
    return LDALoss(COUNTS, gamma=1.0, beta=0.7, margin=1.2, window=1, scaling=case["scaling"],
                   balanced_factor=30.0 if case["scaling"] == "official" else 0.05, global_batch=global_batch,
                   balanced_risk=case["balanced_risk"])


def worker(rank, world_size, port, modes, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        x, targets, valid = global_batch(world_size)
        mine = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        for global_batch_mode, (index, case) in itertools.product(modes, enumerate(CASES)):
            # Without features the projection takes no part in the loss.
            model = DistributedDataParallel(TinyHead().double(), find_unused_parameters=not case["features"])
            grads, alpha, loss = run_steps(model, make_criterion(case, global_batch_mode),
                                           x[mine], targets[mine], valid[mine], case)
            results[(global_batch_mode, rank, index)] = (grads, alpha, loss)
    finally:
        dist.destroy_process_group()


def distributed_results(world_size):
    """{(global_batch, rank, case index): (grads, alpha, loss)}; rank-local losses too with 2 ranks."""
    results = mp.Manager().dict()
    modes = (True, False) if world_size == 2 else (True,)
    mp.spawn(worker, args=(world_size, free_port(), modes, results), nprocs=world_size, join=True)
    return dict(results)


_RESULTS = {}


def cached_distributed_results(world_size):
    # One spawn per world size for all tests: starting the processes is most of the time.
    if world_size not in _RESULTS:
        _RESULTS[world_size] = distributed_results(world_size)
    return _RESULTS[world_size]


def one_process_results(world_size):
    x, targets, valid = global_batch(world_size)
    return [run_steps(TinyHead().double(), make_criterion(case), x, targets, valid, case) for case in CASES]


def relative_difference(a, b):
    """Largest relative difference over the parameters (absolute where the reference is 0)."""
    return max(((p - q).norm() / (q.norm() if q.norm() > 0 else 1)).item() for p, q in zip(a, b))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_gradients_equal_one_process_on_the_global_batch(world_size):
    results = cached_distributed_results(world_size)
    for index, (reference_grads, reference_alpha, reference_loss) in enumerate(one_process_results(world_size)):
        for rank in range(world_size):
            grads, alpha, _ = results[(True, rank, index)]
            assert relative_difference(grads, reference_grads) < 1e-12, (CASES[index], rank)
            assert alpha == pytest.approx(reference_alpha, rel=1e-12), CASES[index]
        assert reference_alpha > 0.5, "alpha must be large enough for the balanced term to matter"
        # Each rank's loss is a share: their mean is the one-process loss.
        mean_loss = sum(results[(True, rank, index)][2] for rank in range(world_size)) / world_size
        assert mean_loss == pytest.approx(reference_loss, rel=1e-12), CASES[index]


def test_rank_local_losses_do_not_give_the_global_gradient():
    """The check above can fail: the local-batch loss (the old behaviour) differs from one process."""
    results = cached_distributed_results(2)
    reference = one_process_results(2)
    differences = {index: relative_difference(results[(False, 0, index)][0], reference[index][0])
                   for index in range(len(CASES))}
    # Official scaling sums the balanced risk: DDP's averaging halves it; with features the
    # centres come from half the batch; with uneven valid samples even the means differ.
    for index, case in enumerate(CASES):
        if case["scaling"] == "official" or case["features"] or case["valid"]:
            assert differences[index] > 1e-3, case
