"""Training samplers beyond detectron2's, selected by name with DATALOADER.SAMPLER_TRAIN.

train_net.py's Trainer looks the name up in TRAIN_SAMPLER_REGISTRY; detectron2's own names
(TrainingSampler, RepeatFactorTrainingSampler, ...) go to detectron2's loader unchanged.
"""
import itertools
import logging
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from detectron2.utils import comm
from detectron2.utils.registry import Registry
from torch.utils.data.sampler import Sampler

logger = logging.getLogger(__name__)

TRAIN_SAMPLER_REGISTRY = Registry("TRAIN_SAMPLER")
TRAIN_SAMPLER_REGISTRY.__doc__ = "Training samplers built by `from_config(cfg, dataset_dicts)`."


@TRAIN_SAMPLER_REGISTRY.register()
class ClassBalancedTrainingSampler(Sampler):
    """Class-balanced sampling (Kang et al., ICLR 2020, Sec. 3, p_j = 1/C; cRT's stage 2) over images, as
    the class-aware sampling of EQLv2's LVIS cRT baseline (github.com/tztztztztz/eqlv2,
    configs/decouple/crt_r50_8x2_1x.py): each draw picks a class uniformly among the classes with at
    least one training image, then uniformly one of the images that contain it.

    Like detectron2's TrainingSampler, an infinite stream: one global stream from ``seed``, of which
    rank r of W takes positions r, r + W, ..., so W ranks together draw what one process would.
    Draws are made in chunks with vectorised torch ops (no Python work per draw beyond tolist()).
    """

    CHUNK = 4096  # draws generated at once; part of the stream's definition (same seed, same stream)

    def __init__(self, image_classes: Sequence[Iterable[int]], *, seed: Optional[int] = None):
        """
        Args:
            image_classes: for each image (index into the dataset), the class ids it contains.
            seed: of the global stream, the same on all ranks; None draws one shared by all ranks.
        """
        class_ids, image_ids = [], []
        for image, classes in enumerate(image_classes):
            classes = set(classes)
            class_ids.extend(classes)
            image_ids.extend([image] * len(classes))
        if not class_ids:
            raise ValueError("ClassBalancedTrainingSampler: no image has an annotation")
        class_ids, image_ids = np.asarray(class_ids, np.int64), np.asarray(image_ids, np.int64)
        order = np.lexsort((image_ids, class_ids))  # by class, then image: a CSR table class -> images
        self._images = torch.as_tensor(image_ids[order])
        classes, counts = np.unique(class_ids[order], return_counts=True)  # present classes only
        self._classes, self._counts = torch.as_tensor(classes), torch.as_tensor(counts)
        self._starts = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]))
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank = comm.get_rank()
        self._world_size = comm.get_world_size()
        logger.info(f"ClassBalancedTrainingSampler: {len(counts)} classes with images, "
                    f"{len(image_classes)} images ({int(len(set(image_ids.tolist())))} with a class)")

    @classmethod
    def from_config(cls, cfg, dataset_dicts):
        """The classes of each image from its annotations' (contiguous) category_id."""
        image_classes = [[ann["category_id"] for ann in record.get("annotations", [])] for record in dataset_dicts]
        return cls(image_classes, seed=cfg.SEED if cfg.SEED >= 0 else None)

    @property
    def num_classes(self) -> int:
        """Classes with at least one image: those a draw chooses among."""
        return len(self._counts)

    def draw(self, num: int, generator: torch.Generator):
        """``num`` draws: (class ids, image indices)."""
        slot = torch.randint(len(self._counts), (num,), generator=generator)
        count = self._counts[slot]
        # floor(u * n) for u ~ U[0, 1) is uniform on {0, ..., n-1}; float64 keeps it exact for any dataset size.
        offset = (torch.rand(num, generator=generator, dtype=torch.float64) * count).long()
        return self._classes[slot], self._images[self._starts[slot] + offset]

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self):
        generator = torch.Generator()
        generator.manual_seed(self._seed)
        while True:
            yield from self.draw(self.CHUNK, generator)[1].tolist()
