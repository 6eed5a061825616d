"""Class-weighted losses (RW, DRW, CB-Focal, LDAM-DRW) under DDP give the global batch's weighted mean.

Each rank's batch has another class mix, so per-rank weighted means averaged by DDP would differ from
one process on the whole batch; the gradients must equal that process's (float64, 2 gloo ranks).
"""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from lda_cls.methods.ce import CrossEntropyLoss
from tests.helpers import free_port

WEIGHTS = torch.tensor([0.2, 1.0, 5.0], dtype=torch.float64)


def batch():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, generator=generator, dtype=torch.float64)
    targets = torch.tensor([0, 0, 0, 1, 2, 2, 1, 0])  # rank 0: mostly head, rank 1: mostly tail
    return x, targets


def grads(model, loss_fn, x, targets):
    wrapped = DistributedDataParallel(model) if dist.is_initialized() else model
    loss_fn({"logits": wrapped(x)}, targets)["loss"].backward()
    return [p.grad.clone() for p in model.parameters()]


def make():
    torch.manual_seed(0)
    loss_fn = CrossEntropyLoss(3).double()
    loss_fn.set_class_weights(WEIGHTS)
    return torch.nn.Linear(4, 3).double(), loss_fn


def worker(rank, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        x, targets = batch()
        mine = slice(4 * rank, 4 * rank + 4)
        results[rank] = grads(*make(), x[mine], targets[mine])
    finally:
        dist.destroy_process_group()


def test_weighted_mean_is_global_under_ddp():
    results = mp.Manager().dict()
    mp.spawn(worker, args=(free_port(), results), nprocs=2, join=True)
    reference = grads(*make(), *batch())
    for rank in range(2):
        for got, expected in zip(results[rank], reference):
            assert torch.allclose(got, expected, rtol=1e-12, atol=1e-14), rank
