"""The per-process body of test_seesaw.py's 2-rank test (importable, so that spawn can pickle it)."""
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from lda_det import SeesawOutputLayers

NUM_CLASSES = 4
FEATURE_DIM = 6
STEPS = 2


def make_predictor(**kwargs) -> SeesawOutputLayers:
    torch.manual_seed(0)
    args = dict(box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)), num_classes=NUM_CLASSES,
                test_score_thresh=0.0, test_topk_per_image=100, log_period=0)
    args.update(kwargs)
    return SeesawOutputLayers(ShapeSpec(channels=FEATURE_DIM), **args)


def rank_batch(rank: int, step: int):
    """Features and proposals of rank ``rank``'s two images at ``step``: uneven sizes and classes.

    Labels: 0..3 foreground, 4 background, -1 ignored (not counted, no loss).
    """
    generator = torch.Generator().manual_seed(100 * rank + step)
    if rank == 0:
        gt_classes = [[0, 0, 0, 1, 4, 4], [0, 2, 4, 4, -1]]
    else:
        gt_classes = [[3, 4, 4], [1, 1, 4, 4, 4, 4, 4]]
    if step == 1:  # the second step shifts the classes, so that counts grow unevenly
        gt_classes = [[c if c in (-1, NUM_CLASSES) else (c + rank + 1) % NUM_CLASSES for c in image]
                      for image in gt_classes]
    proposals = []
    for image in gt_classes:
        n = len(image)
        xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 50
        wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 30 + 5
        instances = Instances((100, 100))
        instances.proposal_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        instances.gt_boxes = Boxes(torch.cat([xy + 2, xy + wh - 1], dim=1))
        instances.gt_classes = torch.tensor(image, dtype=torch.long)
        proposals.append(instances)
    features = torch.randn(sum(len(image) for image in gt_classes), FEATURE_DIM, generator=generator,
                           dtype=torch.float64)
    return features, proposals


def train_steps(batches):
    """The predictor (float64) through ``batches`` (one per step): per step its total loss, the
    gradients of the last step, and the class counts at the end."""
    predictor = make_predictor(cosine_classifier=True).double()
    losses = []
    for step, (features, proposals) in enumerate(batches):
        predictor.zero_grad()
        with EventStorage(step):
            loss = sum(predictor.losses(predictor(features), proposals).values())
        loss.backward()
        losses.append(loss.detach())
    gradients = {name: p.grad.detach().clone() for name, p in predictor.named_parameters()}
    return torch.stack(losses), gradients, predictor.class_counts.clone()


def seesaw_on_rank(output_prefix: str) -> None:
    """Each rank: its own proposals for STEPS steps; gradients averaged over ranks as DDP does."""
    import torch.distributed as dist
    from detectron2.utils import comm
    torch.set_num_threads(1)
    rank = comm.get_rank()
    losses, gradients, counts = train_steps([rank_batch(rank, step) for step in range(STEPS)])
    for grad in gradients.values():
        dist.all_reduce(grad)
        grad /= comm.get_world_size()
    torch.save({"losses": losses, "gradients": gradients, "counts": counts}, f"{output_prefix}.rank{rank}.pt")
