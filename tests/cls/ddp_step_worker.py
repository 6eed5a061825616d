"""One lda_cls training step (model and criterion built from the config), alone or under torchrun.

    python tests/cls/ddp_step_worker.py OUT.pt                               # one process, whole batch
    torchrun --nproc_per_node 2 tests/cls/ddp_step_worker.py OUT.pt          # each rank half of it, DDP

Writes rank 0's parameter gradients after the second step and its alpha. Alpha is fixed
(LDA.FIXED_ALPHA) so that the balanced risk weighs in whatever h and h' guess on random
images; the global alpha itself is tested in tests/core/test_global_batch.py. The backbone's BatchNorm layers run in
eval mode: batch statistics per rank are BatchNorm's own (DataParallel has them too) and
not what this compares; everything else is the training step of lda_cls.engine.
"""
import sys

import torch
from torch.nn.parallel import DistributedDataParallel

from lda_cls.config import get_cfg
from lda_cls.methods import build_method
from lda_cls import build_model
from lda_cls.utils import init_distributed, rank, world_size

CLASS_COUNTS = [60, 30, 14, 7, 3]
BATCH = 12


def main(out_path: str) -> None:
    device = init_distributed()
    cfg = get_cfg()
    cfg.DATASET.NUM_CLASSES = len(CLASS_COUNTS)
    cfg.LDA.WINDOW = 1
    cfg.LDA.FIXED_ALPHA = 5.0
    torch.manual_seed(0)
    model = build_model(cfg, len(CLASS_COUNTS)).double().to(device)
    criterion = build_method(cfg, CLASS_COUNTS).build_criterion().to(device)
    model.eval()
    criterion.train()
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, cfg.MODEL.IN_CHANS, cfg.INPUT.SIZE, cfg.INPUT.SIZE, generator=generator,
                         dtype=torch.float64)
    targets = torch.tensor([0, 0, 0, 1, 0, 2, 0, 1, 3, 0, 4, 1])
    per_rank = BATCH // world_size()
    mine = slice(rank() * per_rank, (rank() + 1) * per_rank)
    trained = DistributedDataParallel(model) if world_size() > 1 else model
    for _ in range(2):
        model.zero_grad()
        losses = criterion(trained(images[mine].to(device)), targets[mine].to(device))
        losses["loss"].backward()
    if rank() == 0:
        torch.save({"grads": {name: p.grad.cpu() for name, p in model.named_parameters()},
                    "alpha": losses["alpha"].item(), "world_size": world_size()}, out_path)
    if world_size() > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
