"""Samplers by name (lda_cls/samplers.py) and the epoch hooks (lda_cls/hooks/schedules.py)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from lda_cls import get_cfg
from lda_cls.hooks import ClassWeightSchedule, DeferredResampling, build_hooks
from lda_cls.methods.ce import CrossEntropyLoss
from lda_cls.methods.class_weights import class_weights
from lda_cls.samplers import TrainSampler

COUNTS = [500, 50, 5]
TARGETS = sum(([label] * count for label, count in enumerate(COUNTS)), [])


def drawn_class_frequencies(sampler, epochs):
    labels = np.asarray(TARGETS)
    drawn = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        drawn.extend(labels[list(sampler)])
    return np.bincount(drawn, minlength=len(COUNTS)), len(drawn)


def chi_square(observed, expected):
    return float(((observed - expected) ** 2 / expected).sum())


def test_class_balanced_sampler_draws_each_class_equally_often():
    observed, total = drawn_class_frequencies(TrainSampler(TARGETS, "class_balanced", seed=0), epochs=20)
    # 11,100 draws, 1/3 each; chi-square with 2 degrees of freedom: 13.8 is the 0.1% critical value.
    assert chi_square(observed, np.full(3, total / 3)) < 13.8
    assert observed.min() > 0.3 * total  # the instance sampler would give the 5-image class 0.9%


def test_square_root_and_progressive_class_probabilities():
    sqrt = np.sqrt(COUNTS)
    observed, total = drawn_class_frequencies(TrainSampler(TARGETS, "square_root", seed=1), epochs=20)
    assert chi_square(observed, total * sqrt / sqrt.sum()) < 13.8
    progressive = TrainSampler(TARGETS, "progressive", total_epochs=10)
    progressive.set_epoch(0)
    assert progressive.class_probabilities().tolist() == pytest.approx([c / 555 for c in COUNTS])
    progressive.set_epoch(5)  # halfway: the mean of instance and balanced
    assert progressive.class_probabilities().tolist() == pytest.approx([(c / 555 + 1 / 3) / 2 for c in COUNTS])
    progressive.set_epoch(10)
    assert progressive.class_probabilities().tolist() == pytest.approx([1 / 3] * 3)


def test_instance_sampler_is_torchs_distributed_sampler_and_ranks_share_one_draw():
    for rank in range(3):
        ours = TrainSampler(TARGETS, "instance", num_replicas=3, rank=rank, seed=7)
        torchs = DistributedSampler(TARGETS, num_replicas=3, rank=rank, shuffle=True, seed=7, drop_last=True)
        ours.set_epoch(4)
        torchs.set_epoch(4)
        assert list(ours) == list(torchs)
    shares = [TrainSampler(TARGETS, "class_balanced", num_replicas=2, rank=r, seed=3) for r in range(2)]
    single = TrainSampler(TARGETS, "class_balanced", num_replicas=1, rank=0, seed=3)
    global_draw = list(single)[:2 * len(shares[0])]
    assert list(shares[0]) == global_draw[0::2] and list(shares[1]) == global_draw[1::2]
    assert len(shares[0]) == len(TARGETS) // 2


def test_drw_switches_to_effective_number_weights_at_the_start_epoch():
    cfg = get_cfg()
    cfg.SOLVER.EPOCHS = 200
    cfg.REWEIGHT.TYPE = "effective"
    cfg.REWEIGHT.START_EPOCH = 160
    criterion = CrossEntropyLoss(3)
    sampler = TrainSampler(TARGETS)
    (hook,) = build_hooks(cfg, COUNTS, criterion, sampler)
    assert isinstance(hook, ClassWeightSchedule)
    expected = class_weights("effective", COUNTS, 0.9999)
    for epoch, weights in ((0, torch.ones(3)), (159, torch.ones(3)), (160, expected), (199, expected)):
        hook.before_epoch(epoch)
        assert torch.equal(criterion.class_weights, weights), epoch
    hook.before_epoch(10)  # resuming before the switch restores the unweighted loss
    assert torch.equal(criterion.class_weights, torch.ones(3))
    cfg.REWEIGHT.START_EPOCH = 200
    with pytest.raises(ValueError, match="never takes effect"):
        build_hooks(cfg, COUNTS, criterion, sampler)


def test_drs_switches_the_sampler_at_the_deferred_epoch():
    cfg = get_cfg()
    cfg.SOLVER.EPOCHS = 4
    cfg.SAMPLER.DEFERRED = "class_balanced"
    cfg.SAMPLER.DEFERRED_EPOCH = 2
    sampler = TrainSampler(TARGETS)
    (hook,) = build_hooks(cfg, COUNTS, CrossEntropyLoss(3), sampler)
    assert isinstance(hook, DeferredResampling)
    names = []
    for epoch in range(4):
        hook.before_epoch(epoch)
        names.append(sampler.name)
    assert names == ["instance", "instance", "class_balanced", "class_balanced"]
