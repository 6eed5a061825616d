"""The per-process body of test_distributed.py (importable, so that spawn can pickle it)."""
import torch
from detectron2.data import build_detection_train_loader
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from .conftest import tiny_cfg


def train_a_few_iterations(output_prefix: str, num_iterations: int) -> None:
    torch.set_num_threads(1)
    cfg = tiny_cfg(opts=["MODEL.LDA.LOG_PERIOD", 1])
    torch.manual_seed(0)  # same initial weights on both ranks (DDP also broadcasts them)
    model = build_model(cfg)
    # detectron2's create_ddp_model passes device_ids, which a CPU module rejects; on CPU DDP
    # needs none. broadcast_buffers=False as detectron2 does, so that equal LDA windows on
    # both ranks come from LDALoss's own all_reduce, not from a broadcast.
    ddp = DistributedDataParallel(model, broadcast_buffers=False)
    trainer = SimpleTrainer(ddp, build_detection_train_loader(cfg), build_optimizer(cfg, model))
    trainer.train(0, num_iterations)
    losses = {k: v for k, v in trainer.storage.latest().items() if k.startswith("loss") or k == "total_loss"}
    torch.save({"rank": comm.get_rank(), "world_size": comm.get_world_size(),
                "params": {k: v.detach().clone() for k, v in model.named_parameters()},
                "window": model.roi_heads.box_predictor.lda_loss.balance.state_dict(),
                "losses": {k: v[0] for k, v in losses.items()}},
               f"{output_prefix}.rank{comm.get_rank()}.pt")
