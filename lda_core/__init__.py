"""lda_core: the loss of Long-tailed Distribution Adaptation, in plain PyTorch.

Knows nothing of images, boxes, timm or detectron2: tensors in, tensors out.
"""
from .balance import AccuracyGapWindow
from .divergence import class_divergence
from .loss import LDALoss, global_class_divergence

__all__ = ["LDALoss", "AccuracyGapWindow", "class_divergence", "global_class_divergence"]
