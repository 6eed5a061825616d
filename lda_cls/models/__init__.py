"""Models of lda_cls: timm backbones, the CIFAR ResNets, the LDA head."""
from . import resnet_cifar  # noqa: F401  registers resnet{8,20,32}_cifar with timm (side effect)
from .build import LongTailClassifier, build_model, deploy_state_dict, freeze_all_but_last_block, load_model_weights
from .head import LDAHead
from .resnet_cifar import CifarResNet

__all__ = ["LongTailClassifier", "build_model", "deploy_state_dict", "freeze_all_but_last_block", "load_model_weights",
           "LDAHead", "CifarResNet"]
