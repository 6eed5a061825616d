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
    cfg = tiny_cfg(opts=["MODEL.ROI_BOX_HEAD.LOG_PERIOD", 1])
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


# The LDA head on one rank's share of a batch, float64; see test_distributed.py.
HEAD_SCALINGS = ("official", "calibrated")


def head_batch(generator_seed: int, num_images: int, positives_per_image):
    """Features (rows) and proposals of ``num_images`` images with 6 sampled proposals each."""
    from .test_predictor import FEATURE_DIM, NUM_CLASSES, make_proposals
    generator = torch.Generator().manual_seed(generator_seed)
    gt_classes = []
    for image in range(num_images):
        positives = torch.randint(0, NUM_CLASSES, (positives_per_image[image],), generator=generator).tolist()
        gt_classes.append(positives + [NUM_CLASSES] * (6 - len(positives)))  # the rest background
    proposals = make_proposals(gt_classes)
    for instances in proposals:  # float64 boxes, as the head's parameters
        instances.proposal_boxes.tensor = instances.proposal_boxes.tensor.double()
        instances.gt_boxes.tensor = instances.gt_boxes.tensor.double()
    features = torch.randn(6 * num_images, FEATURE_DIM, generator=generator, dtype=torch.float64)
    return features, proposals


def head_gradients(features, proposals, scaling: str):
    """Parameter gradients of the LDA head's total loss (float64), 8 rows per image (2 padded)."""
    from detectron2.utils.events import EventStorage
    from .test_predictor import make_predictor
    predictor = make_predictor(scaling=scaling, fixed_alpha=3.0, batch_size_per_image=8,
                               balanced_loss_weight=0.5 if scaling == "calibrated" else 2.0).double()
    with EventStorage(0):
        losses = predictor.losses(predictor(features), proposals)
    sum(losses.values()).backward()
    return {name: p.grad.detach().clone() for name, p in predictor.named_parameters() if p.grad is not None}


# Rank r's positives per image: uneven across ranks (5 + 4 on rank 0, 1 + 0 on rank 1).
POSITIVES_PER_RANK = ([5, 4], [1, 0])


def head_gradients_on_rank(output_prefix: str) -> None:
    """Each rank: its two images through the head, gradients averaged over ranks as DDP does.

    Also: the class counts are read on rank 0 only and broadcast (rank 1 cannot read them).
    """
    import torch.distributed as dist
    import lda_det.class_counts as class_counts
    torch.set_num_threads(1)
    rank = comm.get_rank()
    features, proposals = head_batch(rank, 2, POSITIVES_PER_RANK[rank])
    result = {}
    for scaling in HEAD_SCALINGS:
        gradients = head_gradients(features, proposals, scaling)
        for grad in gradients.values():
            dist.all_reduce(grad)
            grad /= comm.get_world_size()
        result[scaling] = gradients

    cfg = tiny_cfg(opts=["MODEL.LDA.CLASS_COUNT_SOURCE", "config", "MODEL.LDA.CLASS_COUNTS", list(range(1, 25))])
    if rank == 1:
        def must_not_read(*args, **kwargs):
            raise AssertionError("rank 1 read the class counts")
        class_counts.class_counts_from_config = must_not_read
    result["broadcast_counts"] = class_counts.class_counts_for_model(cfg)
    cfg.MODEL.LDA.CLASS_COUNTS = [1, 2]  # wrong length: rank 0 fails, every rank must raise
    try:
        class_counts.class_counts_for_model(cfg)
    except RuntimeError as error:
        result["error"] = str(error)
    torch.save(result, f"{output_prefix}.rank{rank}.pt")
