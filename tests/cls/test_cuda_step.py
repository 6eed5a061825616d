"""On a CUDA device, the trainer's step (images held on the GPU, bf16, channels_last) never syncs with the host.

Skipped without CUDA; benchmarks/gpu_validate.sh runs it on a lent GPU.
"""
import pytest
import torch

from lda_cls import BatchPreprocess, build_model, get_cfg
from lda_cls.methods import build_method
from lda_cls.data import DeviceBatches, TensorImageDataset
from lda_cls.solver import build_optimizer, build_scheduler

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("method", ["ce", "lda"])
def test_training_step_never_synchronises_with_the_host(method):
    torch.manual_seed(0)
    cfg = get_cfg()
    cfg.METHOD, cfg.MODEL.BACKBONE, cfg.MODEL.IN_CHANS, cfg.INPUT.SIZE = method, "resnet8_cifar", 3, 16
    cfg.INPUT.MEAN, cfg.INPUT.STD, cfg.INPUT.PAD_CROP, cfg.INPUT.FLIP = [0.5] * 3, [0.25] * 3, 2, True
    device = torch.device("cuda")
    counts = [40, 20, 10, 5, 3]
    targets = [c for c, n in enumerate(counts) for _ in range(n)]
    images = torch.randint(0, 256, (len(targets), 3, 16, 16), dtype=torch.uint8)
    sampler = torch.utils.data.RandomSampler(range(len(targets)))
    batches = DeviceBatches(TensorImageDataset(images, targets), 16, device, sampler=sampler, drop_last=True)
    preprocess = BatchPreprocess.from_config(cfg, train=True, in_memory=True).to(device)
    model = build_model(cfg, len(counts)).to(device).to(memory_format=torch.channels_last).train()
    criterion = build_method(cfg, counts).build_criterion().to(device).train()
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, len(batches))

    def step(global_step, x, y):
        x = preprocess(x).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outputs = model(x)
        losses = criterion(outputs, y)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        scheduler.step_update(global_step)
        return losses["loss"].detach()

    iterator = iter(batches)  # the epoch's one host-to-device copy of the order happens here
    step(1, *next(iterator))  # first step: cuDNN / cuBLAS set-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss_sum = sum(step(2 + i, x, y) for i, (x, y) in enumerate(iterator))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(batches) == 4 and torch.isfinite(loss_sum).item()
