"""Before training: every validation and test image decodes, so a corrupt one costs no training epoch.

A JPEG is decoded at 1/8 scale (PIL's ``draft``: DCT scaling, the whole entropy-coded stream is still
read, so a truncated or damaged file fails as it would in the evaluation transform) in about 0.55x the
time of a full decode: 1.8 ms against 3.1 ms for a 500x375 ImageNet-sized JPEG on one Zen 5 core
(``benchmarks/bench_decode_check.py``). Other formats are decoded in full. Each rank checks a strided
shard with the loader's workers, and the failures are gathered, so every rank stops with the same error.
"""
import os
from typing import List, Sequence, Tuple

from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..utils import all_gather_objects, rank, world_size

__all__ = ["decode_error", "undecodable_images", "check_decodable", "dataset_paths"]

SHOWN = 5  # undecodable paths named in the error
BATCH = 64  # images per worker task


def decode_error(path: str) -> str:
    """'' if the image at ``path`` decodes, else the decoder's message."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ... for damaged files
        return f"{type(error).__name__}: {error}"
    return ""


class _DecodeErrors(Dataset):
    def __init__(self, paths: Sequence[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> str:
        return decode_error(self.paths[index])


def undecodable_images(paths: Sequence[str], num_workers: int = 0) -> List[Tuple[str, str]]:
    """[(path, decoder message)] of the ``paths`` that do not decode, in list order."""
    batches = -(-len(paths) // BATCH)
    workers = min(num_workers, batches) if batches > 1 else 0  # no worker processes for one batch
    loader = DataLoader(_DecodeErrors(paths), batch_size=BATCH, num_workers=workers, collate_fn=list)
    errors = [message for batch in loader for message in batch]
    return [(path, message) for path, message in zip(paths, errors) if message]


def check_decodable(paths: Sequence[str], source: str, num_workers: int = 0) -> None:
    """Raise ValueError naming the first images of ``source`` that do not decode, and their count.

    Under torch.distributed each rank decodes ``paths[rank::world_size]``; one all_gather_object of
    the (few) failures follows, so all ranks raise the same error or none does.
    """
    shard = undecodable_images(list(paths[rank()::world_size()]), num_workers)
    order = {path: index for index, path in enumerate(paths)}
    failures = sorted((f for part in all_gather_objects(shard) for f in part), key=lambda failure: order[failure[0]])
    if failures:
        shown = "; ".join(f"{path} ({message})" for path, message in failures[:SHOWN])
        more = f" (and {len(failures) - SHOWN} more)" if len(failures) > SHOWN else ""
        raise ValueError(f"{len(failures)} of the {len(paths)} images of {source} do not decode: {shown}{more}"
                         f" (DATASET.CHECK_EVAL_IMAGES False skips this check)")


def dataset_paths(dataset) -> List[str]:
    """Full paths of a FileListDataset's images."""
    return [os.path.join(dataset.root, path) for path, _ in dataset.samples]
