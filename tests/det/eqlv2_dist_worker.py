"""The per-process body of test_eqlv2.py's 2-rank test (importable, so that spawn can pickle it)."""
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

from lda_det import EQLv2OutputLayers

from .test_predictor import make_proposals

NUM_CLASSES = 3
STEPS = 2
PROPOSALS_PER_RANK = (5, 3)  # uneven on purpose


def make_eqlv2(**kwargs):
    torch.manual_seed(0)
    args = dict(box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)), num_classes=NUM_CLASSES,
                test_score_thresh=0.0, test_topk_per_image=100, log_period=1)
    args.update(kwargs)
    return EQLv2OutputLayers(ShapeSpec(channels=8), **args).double()


def rank_batch(rank: int, step: int):
    """(float64 logits, one image's proposals) of ``rank`` at ``step``: rank 0's cover every class and background."""
    generator = torch.Generator().manual_seed(100 * rank + step)
    n = PROPOSALS_PER_RANK[rank]
    gt_classes = [(i + rank + step) % (NUM_CLASSES + 1) for i in range(n)]
    logits = torch.randn(n, NUM_CLASSES + 1, generator=generator, dtype=torch.float64) * 2
    return logits, make_proposals([gt_classes])


def run_steps(predictor, batches):
    """One loss (and statistics update) per batch of (logits, proposals)."""
    for step, (logits, proposals) in enumerate(batches):
        with EventStorage(step):
            deltas = torch.zeros(len(logits), 4 * NUM_CLASSES, dtype=torch.float64)
            predictor.losses((logits, deltas), proposals)
    return {name: getattr(predictor, name).clone() for name in ("pos_grad", "neg_grad", "pos_neg")}


def statistics_on_rank(output_prefix: str) -> None:
    torch.set_num_threads(1)
    rank = comm.get_rank()
    statistics = run_steps(make_eqlv2(), [rank_batch(rank, step) for step in range(STEPS)])
    torch.save(statistics, f"{output_prefix}.rank{rank}.pt")
