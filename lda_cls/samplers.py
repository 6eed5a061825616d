"""Training samplers by name (SAMPLER.NAME), DDP-aware: each rank iterates its share of one global draw.

Class-aware sampling (Kang et al. 2020, Sec. 3, Eq. 1): class y is drawn with probability
q_y = n_y^p / sum_k n_k^p, then an image uniformly within the class.

* ``instance``:       p = 1, i.e. every image once per epoch in a random order (exactly
                      torch's DistributedSampler with shuffle and drop_last);
* ``class_balanced``: p = 0, q_y = 1 / C;
* ``square_root``:    p = 1/2;
* ``progressive``:    q_y(t) = (1 - t/T) n_y / N + (t/T) / C, epoch t of T (Kang et al. 2020, Eq. 2).

The class-aware draws are with replacement, N // world_size images per rank and epoch, so an
epoch has as many steps whichever sampler runs (a DRS switch keeps the loader's length).
Epoch e of the global draw is seeded with SEED + e, as DistributedSampler is.
"""
from typing import Callable, Dict, Optional, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["SAMPLERS", "register_sampler", "TrainSampler", "build_train_sampler"]

# name -> fn(class_counts (C,) float64, epoch, total_epochs) -> class probabilities q (C,), or None for
# plain instance sampling. A dict: the names are config values (see lda_cls/models/classifiers.py).
SAMPLERS: Dict[str, Callable[[torch.Tensor, int, int], Optional[torch.Tensor]]] = {}


def register_sampler(name: str):
    def wrap(fn):
        if name in SAMPLERS:
            raise KeyError(f"sampler {name!r} is registered twice")
        SAMPLERS[name] = fn
        return fn
    return wrap


@register_sampler("instance")
def _instance(counts, epoch, total_epochs):
    return None


@register_sampler("class_balanced")
def _class_balanced(counts, epoch, total_epochs):
    return torch.full_like(counts, 1.0 / len(counts))


@register_sampler("square_root")
def _square_root(counts, epoch, total_epochs):
    return counts.sqrt() / counts.sqrt().sum()


@register_sampler("progressive")
def _progressive(counts, epoch, total_epochs):
    t = min(epoch / max(total_epochs, 1), 1.0)
    return (1 - t) * counts / counts.sum() + t / len(counts)


class TrainSampler(Sampler):
    """The training sampler of the trainer; ``use(name)`` switches policy (deferred re-sampling)."""

    def __init__(self, targets: Sequence[int], name: str = "instance", num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, total_epochs: int = 1, num_classes: Optional[int] = None):
        self.targets = torch.as_tensor(list(targets), dtype=torch.int64)
        self.num_classes = int(num_classes or int(self.targets.max()) + 1)
        self.counts = torch.bincount(self.targets, minlength=self.num_classes).double()
        # Image indices grouped by class, and where each class starts: a class draw + an offset is an index.
        self.by_class = torch.argsort(self.targets, stable=True)
        self.starts = torch.cumsum(self.counts.long(), 0) - self.counts.long()
        self.num_replicas, self.rank, self.seed = int(num_replicas), int(rank), int(seed)
        self.total_epochs = int(total_epochs)
        self.num_samples = len(self.targets) // self.num_replicas
        self.epoch = 0
        self.use(name)

    def use(self, name: str) -> None:
        if name not in SAMPLERS:
            raise ValueError(f"SAMPLER.NAME must be one of {sorted(SAMPLERS)}, got {name!r}")
        self.name = name

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def class_probabilities(self) -> Optional[torch.Tensor]:
        return SAMPLERS[self.name](self.counts, self.epoch, self.total_epochs)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        total = self.num_samples * self.num_replicas
        probabilities = self.class_probabilities()
        if probabilities is None:
            order = torch.randperm(len(self.targets), generator=generator)[:total]
        else:
            present = self.counts > 0  # a class without images cannot be drawn
            probabilities = torch.where(present, probabilities, torch.zeros_like(probabilities))
            # N draws whatever the world size, then the first ``total``: every rank count shares one draw.
            size = len(self.targets)
            classes = torch.multinomial(probabilities, size, replacement=True, generator=generator)
            offsets = (torch.rand(size, generator=generator, dtype=torch.float64) * self.counts[classes]).long()
            order = self.by_class[self.starts[classes] + offsets][:total]
        return iter(order[self.rank:total:self.num_replicas].tolist())


def build_train_sampler(cfg, dataset, num_replicas: int = 1, rank: int = 0,
                        num_classes: Optional[int] = None) -> TrainSampler:
    return TrainSampler(dataset.targets, cfg.SAMPLER.NAME, num_replicas=num_replicas, rank=rank, seed=cfg.SEED,
                        total_epochs=cfg.SOLVER.EPOCHS, num_classes=num_classes)
