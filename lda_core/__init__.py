"""lda_core: the loss of Long-tailed Distribution Adaptation, in plain PyTorch.

Knows nothing of images, boxes, timm or detectron2: tensors in, tensors out.
"""
from .balance import AccuracyGapWindow
from .divergence import class_divergence
from .loss import LDALoss

__all__ = ["LDALoss", "AccuracyGapWindow", "class_divergence"]
