"""Batches cut from an in-memory dataset held on the device (DATASET.ON_DEVICE).

A ``TensorImageDataset`` is one uint8 tensor; CIFAR-10-LT is 37 MB of it. Held on the
GPU, a batch is one ``index_select`` there: no per-image ``__getitem__``, collate,
pinning or host-to-device copy. The order is the sampler's, so a run sees exactly the
batches a ``DataLoader`` over the same sampler would give (tests/cls/test_cls_data.py).
"""
from typing import Iterator, Optional, Sequence, Tuple

import torch

from .datasets import TensorImageDataset

__all__ = ["DeviceBatches"]


class DeviceBatches:
    """Iterable of (uint8 images, int64 targets) batches, both on ``device``.

    ``sampler`` (e.g. a DistributedSampler; its ``set_epoch`` is honoured) gives the
    order; without one the dataset is read in order. ``drop_last`` as in DataLoader.
    """

    def __init__(self, dataset: TensorImageDataset, batch_size: int, device: torch.device,
                 sampler: Optional[Sequence[int]] = None, indices: Optional[Sequence[int]] = None,
                 drop_last: bool = False):
        if dataset.images is None:
            raise ValueError("DeviceBatches needs a dataset built with its images (load_images=True)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.images = dataset.images.to(device)
        self.targets = torch.as_tensor(dataset.targets, dtype=torch.int64, device=device)
        self.batch_size = batch_size
        self.device = device
        self.sampler = sampler
        self.indices = None if indices is None else list(indices)
        self.drop_last = drop_last

    def _order(self) -> Sequence[int]:
        if self.sampler is not None:
            return list(self.sampler)
        return self.indices if self.indices is not None else range(len(self.targets))

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self._order())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        # One host-to-device copy of the epoch's order; every batch after it stays on the device.
        order = torch.as_tensor(self._order(), dtype=torch.int64).to(self.device, non_blocking=True)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.images.index_select(0, index), self.targets.index_select(0, index)
