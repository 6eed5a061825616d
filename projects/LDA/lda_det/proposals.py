"""The training targets of the sampled proposals, shared by every box predictor of lda_det."""
from typing import List, Tuple

import torch

from detectron2.layers import cat
from detectron2.structures import Instances

__all__ = ["sampled_targets"]


def sampled_targets(proposals: List[Instances], device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gt_classes, proposal_boxes, gt_boxes) of the sampled proposals, concatenated over the images
    as FastRCNNOutputLayers.losses does; empty tensors on ``device`` when there is no image."""
    if not len(proposals):
        return (torch.empty(0, dtype=torch.long, device=device),) + (torch.empty((0, 4), device=device),) * 2
    gt_classes = cat([p.gt_classes for p in proposals], dim=0)
    proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
    assert not proposal_boxes.requires_grad, "Proposals should not require gradients!"
    # Negatives may lack gt_boxes; their placeholder value is never used.
    gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)
    return gt_classes, proposal_boxes, gt_boxes
