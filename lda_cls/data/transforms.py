"""Augmentation: per-image transforms for file datasets, per-batch ones on the device.

Datasets yield uint8 CHW tensors. ``BatchPreprocess`` turns a uint8 batch into a
normalised float batch on the device (random pad-crop and flip for in-memory
datasets), so CIFAR-sized data needs no loader workers and a GPU is not starved.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms as T

__all__ = ["BatchPreprocess", "build_file_transform"]


def build_file_transform(cfg, train: bool):
    """PIL image -> uint8 CHW tensor of size INPUT.SIZE (ImageNet-style crops)."""
    size = cfg.INPUT.SIZE
    if train:
        steps = [T.RandomResizedCrop(size) if cfg.INPUT.RANDOM_RESIZED_CROP
                 else T.Compose([T.Resize(cfg.INPUT.TEST_RESIZE), T.RandomCrop(size)])]
        if cfg.INPUT.FLIP:
            steps.append(T.RandomHorizontalFlip())
        if cfg.INPUT.COLOR_JITTER > 0:
            strength = cfg.INPUT.COLOR_JITTER
            steps.append(T.ColorJitter(strength, strength, strength))
    else:
        steps = [T.Resize(cfg.INPUT.TEST_RESIZE), T.CenterCrop(size)]
    return T.Compose(steps + [T.PILToTensor()])


class BatchPreprocess(nn.Module):
    """uint8 (B, C, H, W) -> normalised float, with optional random pad-crop and flip.

    All randomness is drawn on the batch's device from the default generator, and
    no value goes back to the host.
    """

    def __init__(self, mean, std, pad_crop: int = 0, flip: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.pad_crop = int(pad_crop)
        self.flip = bool(flip)

    @classmethod
    def from_config(cls, cfg, train: bool, in_memory: bool) -> "BatchPreprocess":
        # File datasets already cropped and flipped each image in the loader.
        augment = train and in_memory
        return cls(cfg.INPUT.MEAN, cfg.INPUT.STD, pad_crop=cfg.INPUT.PAD_CROP if augment else 0,
                   flip=cfg.INPUT.FLIP and augment)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.mean.shape[1]:
            raise ValueError(f"images have {images.shape[1]} channels, INPUT.MEAN has {self.mean.shape[1]}")
        x = images.float()
        batch, channels, height, width = x.shape
        if self.pad_crop > 0:
            p = self.pad_crop
            padded = F.pad(x, (p, p, p, p))
            offset_y = torch.randint(0, 2 * p + 1, (batch, 1), device=x.device)
            offset_x = torch.randint(0, 2 * p + 1, (batch, 1), device=x.device)
            rows = (offset_y + torch.arange(height, device=x.device)).view(batch, 1, height, 1)
            cols = (offset_x + torch.arange(width, device=x.device)).view(batch, 1, 1, width)
            batch_index = torch.arange(batch, device=x.device).view(batch, 1, 1, 1)
            channel_index = torch.arange(channels, device=x.device).view(1, channels, 1, 1)
            x = padded[batch_index, channel_index, rows, cols]
        if self.flip:
            flip = torch.rand(batch, 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(3), x)
        return (x - self.mean) / self.std
