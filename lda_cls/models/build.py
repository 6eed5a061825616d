"""build_model: a timm backbone (pooled features) + the LDA head."""
import os
from typing import Dict

import timm
import torch
from timm.utils import freeze
from torch import nn

from lda_common.checkpoint_io import load_checkpoint

from . import resnet_cifar  # noqa: F401  registers resnet*_cifar with timm, imported for that side effect
from .head import LDAHead

__all__ = ["LongTailClassifier", "build_model", "deploy_state_dict", "load_model_weights",
           "freeze_all_but_last_block"]


class LongTailClassifier(nn.Module):
    """backbone -> pooled feature -> head; ``forward`` returns the head's dict
    ("logits" = h(x), "unbalanced_logits" = h'(x), "features", "projection")."""

    def __init__(self, backbone: nn.Module, head: LDAHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)
        return self.head(features)


FROZEN_BN_MODES = ("train", "frozen")


def freeze_all_but_last_block(backbone: nn.Module, frozen_bn: str = "train") -> None:
    """Freeze a ResNet except its last residual block (Places-LT protocol, after OLTR).

    The frozen layers' BatchNorm affine parameters never train. Their statistics:
    ``frozen_bn="train"`` keeps them ordinary BatchNorms, which in training mode
    normalise with batch statistics and update their running estimates, as the
    official trainer does (it only sets requires_grad=False, then model.train());
    ``"frozen"`` turns them into FrozenBatchNorm2d (timm.utils.freeze), so the
    ImageNet statistics stay put.
    """
    if frozen_bn not in FROZEN_BN_MODES:
        raise ValueError(f"MODEL.FROZEN_BN must be one of {FROZEN_BN_MODES}, got {frozen_bn!r}")
    stages = [name for name, _ in backbone.named_children() if name.startswith("layer")]
    if not stages:
        raise ValueError(f"MODEL.FREEZE=all_but_last_block needs a ResNet-style backbone with layerN stages, "
                         f"got {type(backbone).__name__}")
    last_stage = getattr(backbone, stages[-1])
    frozen = [name for name, module in backbone.named_children()
              if name != stages[-1] and any(True for _ in module.parameters())]
    frozen += [f"{stages[-1]}.{index}" for index in range(len(last_stage) - 1)]
    freeze(backbone, frozen, include_bn_running_stats=frozen_bn == "frozen")


def build_model(cfg, num_classes: int, head_layout: str) -> LongTailClassifier:
    """The classifier of cfg: backbone cfg.MODEL.BACKBONE, h of MODEL.CLASSIFIER, and ``head_layout`` (models/head.py),
    which the method names (``Method.head_layout``; ``lda_cls.build_model`` looks it up from cfg.METHOD)."""
    kwargs = dict(num_classes=0, in_chans=cfg.MODEL.IN_CHANS)
    if cfg.MODEL.PRETRAINED_FILE:
        path = os.path.expanduser(cfg.MODEL.PRETRAINED_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MODEL.PRETRAINED_FILE not found: {path}")
        # timm reads the local file and drops the ImageNet classifier (num_classes=0).
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=path))
    if not cfg.MODEL.ZERO_INIT_LAST:
        kwargs["zero_init_last"] = False  # timm ResNets only; others do not take the argument
    try:
        backbone = timm.create_model(cfg.MODEL.BACKBONE, **kwargs)
    except TypeError as error:
        if "zero_init_last" not in str(error):
            raise
        raise ValueError(f"MODEL.ZERO_INIT_LAST False: backbone {cfg.MODEL.BACKBONE!r} takes no zero_init_last "
                         f"(timm ResNet-family only); leave the key True") from error
    if cfg.MODEL.FREEZE == "all_but_last_block":
        freeze_all_but_last_block(backbone, cfg.MODEL.FROZEN_BN)
    elif cfg.MODEL.FREEZE != "none":
        raise ValueError(f"MODEL.FREEZE must be 'none' or 'all_but_last_block', got {cfg.MODEL.FREEZE!r}")
    head = LDAHead(backbone.num_features, num_classes, layout=head_layout,
                   projection=cfg.MODEL.PROJECTION.ENABLED, projection_dim=cfg.MODEL.PROJECTION.DIM,
                   bias=cfg.MODEL.BIAS, classifier=cfg.MODEL.CLASSIFIER)
    return LongTailClassifier(backbone, head)


def deploy_state_dict(model: LongTailClassifier) -> Dict[str, torch.Tensor]:
    """Weights for deployment: the backbone and h only (h' and p are training-time devices)."""
    return {key: value for key, value in model.state_dict().items()
            if key.startswith("backbone.") or key.startswith("head.balanced.")}


def load_model_weights(model: LongTailClassifier, path: str, map_location="cpu") -> None:
    """Load a checkpoint of lda_cls.train (one with a "model" entry, or deploy weights) into ``model``.

    Deploy weights (``deploy_state_dict``) hold no h' and p: the model drops them first, so that the
    strict load still catches every other missing or unexpected key."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    state = load_checkpoint(path, map_location=map_location)  # weights_only: a file from elsewhere runs nothing
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of weights")
    head = model.head
    if head.unbalanced is not None and not any(key.startswith("head.unbalanced.") for key in state):
        head.unbalanced = head.projection = None
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit the model of this config: {error}") from None
