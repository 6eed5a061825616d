"""Under torch.distributed every rank sees the same alpha, computed from the pooled counts."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lda_core import LDALoss

from ..helpers import free_port


def rank_batch(rank: int):
    """Rank 0: h' 3/4 right, h 1/4. Rank 1 (6 samples): h' 6/6, h 0/6."""
    size, unbalanced_right, balanced_right = [(4, 3, 1), (6, 6, 0)][rank]
    targets = torch.arange(size) % 3
    wrong = (targets + 1) % 3
    pick = lambda right: torch.where(torch.arange(size) < right, targets, wrong)
    one_hot = lambda labels: torch.nn.functional.one_hot(labels, 3).float()
    return one_hot(pick(unbalanced_right)), one_hot(pick(balanced_right)), targets


def worker(rank: int, world_size: int, port: int, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        criterion = LDALoss([5, 5, 5], gamma=1.0, window=1)
        out = criterion(*rank_batch(rank))
        results[rank] = (out["alpha"].item(), out["delta_acc"].item())
    finally:
        dist.destroy_process_group()


def test_alpha_is_identical_across_ranks_with_different_batches():
    results = mp.Manager().dict()
    mp.spawn(worker, args=(2, free_port(), results), nprocs=2, join=True)
    # Pooled: h' 9/10 = 90 %, h 1/10 = 10 %; rank-local gaps would be 50 and 100.
    assert results[0] == results[1]
    assert results[0][1] == torch.tensor(80.0).item()
