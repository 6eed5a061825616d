"""DATASET.ON_DEVICE: batches cut from the in-memory tensor equal the DataLoader's, and a run learns."""
import torch
from torch.utils.data import DataLoader, DistributedSampler

from lda_cls.data import DeviceBatches, TensorImageDataset
from lda_cls.train import main

TWO_EPOCHS = ["SOLVER.EPOCHS", "2", "SOLVER.BATCH_SIZE", "16", "SOLVER.WARMUP_EPOCHS", "0", "LOG_PERIOD", "4",
              "NUM_THREADS", "1"]


def tiny_dataset(n=23):
    images = torch.arange(n * 3 * 2 * 2, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, 3, 2, 2)
    return TensorImageDataset(images, [i % 5 for i in range(n)])


def test_training_batches_equal_the_dataloaders_for_each_epoch():
    dataset = tiny_dataset()
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=3, drop_last=True)
    loader = DataLoader(dataset, batch_size=5, sampler=sampler, drop_last=True)
    batches = DeviceBatches(dataset, 5, torch.device("cpu"), sampler=sampler, drop_last=True)
    assert len(batches) == len(loader) == 4  # 23 // 5, the last 3 images dropped
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        expected, got = list(loader), list(batches)
        assert len(got) == 4
        for (images, targets), (our_images, our_targets) in zip(expected, got):
            assert torch.equal(images, our_images) and torch.equal(targets, our_targets)
    sampler.set_epoch(0)
    first = torch.cat([t for _, t in batches])
    sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat([t for _, t in batches]))  # a new order each epoch


def test_evaluation_batches_keep_the_order_and_the_last_partial_batch():
    dataset = tiny_dataset()
    batches = DeviceBatches(dataset, 10, torch.device("cpu"), indices=range(1, 23, 2))  # rank 1 of 2
    sizes = [len(t) for _, t in batches]
    assert sizes == [10, 1] and len(batches) == 2
    targets = torch.cat([t for _, t in batches])
    assert targets.tolist() == [i % 5 for i in range(1, 23, 2)]


def test_run_with_images_on_the_device_learns(tmp_path):
    results = main(["--output-dir", str(tmp_path), *TWO_EPOCHS, "DATASET.ON_DEVICE", "True"])
    assert results["balanced"]["top1"] > 30  # chance is 10
