"""CIFAR ResNets (He et al. 2016, Sec. 4.2): 3 stages of n basic blocks, 16/32/64 channels.

The long-tailed CIFAR benchmarks (LDA Table 1, and LDAM/BBN before it) use
ResNet-32 (n = 5) as in the official LDA code (lib/backbone/resnet_cifar.py,
after Idelbayev's "proper" CIFAR ResNets): option-A shortcuts (identity,
subsampled and zero-padded when the width doubles, no parameters) and Kaiming
fan-in init of every conv and linear layer. Its trunk has 463,504 parameters.

Registered with timm so ``timm.create_model("resnet32_cifar", num_classes=0)``
returns the pooled trunk, exactly like timm's own ResNets:

* ``resnet{8,20,32}_cifar``: option A, Kaiming fan-in (the standard, and the official one).
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import SelectAdaptivePool2d
from timm.models import register_model

__all__ = ["CifarResNet"]

class BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.stride = stride
        # Option A: the identity, subsampled, with the new channels zero (half on each side).
        self.pad_channels = out_chs - in_chs

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad_channels:
            before = self.pad_channels // 2
            x = F.pad(x, (0, 0, 0, 0, before, self.pad_channels - before))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.act(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act(x + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs, with timm's forward_features / forward_head; option-A shortcuts,
    Kaiming fan-in init of every conv and of ``fc``."""

    def __init__(self, blocks_per_stage: int = 5, widths: List[int] = (16, 32, 64),
                 num_classes: int = 1000, in_chans: int = 3, global_pool: str = "avg",
                 drop_rate: float = 0.0, **kwargs):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        stages, in_chs = [], widths[0]
        for stage_index, width in enumerate(widths):
            blocks = [BasicBlock(in_chs if i == 0 else width, width,
                                 stride=2 if (i == 0 and stage_index > 0) else 1)
                      for i in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            in_chs = width
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = self.head_hidden_size = in_chs
        self.feature_info = [dict(num_chs=w, reduction=2 ** i, module=f"layer{i + 1}") for i, w in enumerate(widths)]
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self._init_fc()

    def _init_fc(self) -> None:
        # The official _weights_init also draws Linear weights Kaiming fan-in.
        if isinstance(self.fc, nn.Linear):
            nn.init.kaiming_normal_(self.fc.weight, mode="fan_in", nonlinearity="relu")

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_fc()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(blocks_per_stage: int, pretrained: bool, **kwargs) -> CifarResNet:
    if pretrained:
        raise ValueError("CIFAR ResNets have no published pretrained weights; set MODEL.PRETRAINED_FILE instead")
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    return CifarResNet(blocks_per_stage=blocks_per_stage, **kwargs)


@register_model
def resnet8_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-8 (1 block per stage), option A: the fast model of the digits_lt demo."""
    return _create(1, pretrained, **kwargs)


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 (3 blocks per stage), option A."""
    return _create(3, pretrained, **kwargs)


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-32 (5 blocks per stage), option A: the backbone of the CIFAR-LT tables."""
    return _create(5, pretrained, **kwargs)

