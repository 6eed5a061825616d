"""What a method sees of the run: ``Method.prepare(context)`` and ``Method.hooks(context)`` get a
``MethodContext``, never the trainer, so a method depends on these fields alone."""
import logging
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["MethodContext"]


@dataclass
class MethodContext:
    """``forward_over(dataset, keys=...)``: {the model's outputs named in ``keys`` ("logits", "features", ...; all
    by default), "targets"} over this rank's shard of ``dataset`` (a strided shard; sum over ranks for
    totals), with the test-time transform and the run's precision and memory format (lda_cls/inference.py). ``output_dir``: where the run writes, "" for none.
    ``val_set``: None where the data has no validation split."""

    model: nn.Module
    device: torch.device
    logger: logging.Logger
    output_dir: str
    train_set: Dataset
    val_set: Optional[Dataset]
    test_set: Dataset
    forward_over: Callable[..., Dict[str, torch.Tensor]]
