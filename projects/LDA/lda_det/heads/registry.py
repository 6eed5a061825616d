"""BOX_PREDICTOR_REGISTRY: the box predictors (Fast R-CNN output layers) by name, for MODEL.ROI_BOX_HEAD.PREDICTOR."""
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.utils.registry import Registry

BOX_PREDICTOR_REGISTRY = Registry("BOX_PREDICTOR")
BOX_PREDICTOR_REGISTRY.__doc__ = """Box predictors: called with (cfg, input_shape), return a FastRCNNOutputLayers."""
# detectron2's own (C + 1)-way softmax predictor, the baseline every other one is compared with.
BOX_PREDICTOR_REGISTRY.register(FastRCNNOutputLayers)


def build_box_predictor(cfg, input_shape, name=None):
    """The predictor ``name`` (default: MODEL.ROI_BOX_HEAD.PREDICTOR) on features of ``input_shape``."""
    return BOX_PREDICTOR_REGISTRY.get(name or cfg.MODEL.ROI_BOX_HEAD.PREDICTOR)(cfg, input_shape)
