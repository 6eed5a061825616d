"""A model run over a dataset with the test-time transform: the one loop behind evaluation
(lda_cls/evaluation.py), the decoupling methods' features (lda_cls/methods/decoupling.py) and the
analysis (lda_cls/analysis/collect.py), so that all three see the same images in the same precision
and memory format."""
from typing import Dict, Iterable, Iterator, Optional, Sequence, Tuple

import torch

__all__ = ["OUTPUT_KEYS", "batch_outputs", "forward_over"]

# What LongTailClassifier.forward may give (lda_cls/models/build.py).
OUTPUT_KEYS = ("logits", "unbalanced_logits", "features", "projection")


@torch.no_grad()
def batch_outputs(model, batches: Iterable, preprocess, device: torch.device,
                  autocast_dtype: Optional[torch.dtype] = None,
                  channels_last: bool = False) -> Iterator[Tuple[Dict[str, torch.Tensor], torch.Tensor]]:
    """(model outputs, targets on ``device``) per batch of ``batches``, the model in eval mode."""
    model.eval()
    for images, targets in batches:
        images = preprocess(images.to(device, non_blocking=True))
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model(images)
        yield outputs, targets


def forward_over(model, batches: Iterable, preprocess, device: torch.device,
                 autocast_dtype: Optional[torch.dtype] = None, channels_last: bool = False,
                 keys: Sequence[str] = OUTPUT_KEYS) -> Dict[str, torch.Tensor]:
    """The outputs named in ``keys`` that the model gives (float32) and "targets", concatenated in batch order
    on ``device``."""
    columns: Dict[str, list] = {}
    for outputs, targets in batch_outputs(model, batches, preprocess, device, autocast_dtype, channels_last):
        for key in keys:
            if key in outputs:
                columns.setdefault(key, []).append(outputs[key].float())
        columns.setdefault("targets", []).append(targets)
    if "targets" not in columns:
        raise ValueError("forward_over: the dataset gave no batch")
    return {key: torch.cat(values) for key, values in columns.items()}
