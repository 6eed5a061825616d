"""A narrow ResNet-FPN for the CPU demo (detectron2's ResNet-18 cannot be made narrower).

Registered in BACKBONE_REGISTRY as "build_narrow_resnet_fpn_backbone". Built from
detectron2's own BasicStem / BasicBlock / ResNet / FPN with the usual keys:
MODEL.RESNETS.DEPTH (10, 18 or 34), STEM_OUT_CHANNELS, RES2_OUT_CHANNELS (doubled
per stage), NORM, OUT_FEATURES; MODEL.FPN.*; MODEL.BACKBONE.FREEZE_AT.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, ResNet

BLOCKS_PER_STAGE = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


@BACKBONE_REGISTRY.register()
def build_narrow_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    resnets = cfg.MODEL.RESNETS
    if resnets.DEPTH not in BLOCKS_PER_STAGE:
        raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {sorted(BLOCKS_PER_STAGE)} for "
                         f"build_narrow_resnet_fpn_backbone, got {resnets.DEPTH}")
    stem = BasicStem(input_shape.channels, resnets.STEM_OUT_CHANNELS, norm=resnets.NORM)
    stages, in_channels, out_channels = [], resnets.STEM_OUT_CHANNELS, resnets.RES2_OUT_CHANNELS
    for index, num_blocks in enumerate(BLOCKS_PER_STAGE[resnets.DEPTH]):
        first_stride = 1 if index == 0 else 2
        stages.append(ResNet.make_stage(BasicBlock, num_blocks, in_channels=in_channels,
                                        out_channels=out_channels, norm=resnets.NORM,
                                        stride_per_block=[first_stride] + [1] * (num_blocks - 1)))
        in_channels, out_channels = out_channels, out_channels * 2
    bottom_up = ResNet(stem, stages, out_features=resnets.OUT_FEATURES).freeze(cfg.MODEL.BACKBONE.FREEZE_AT)
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)
