"""detectron2's DefaultTrainer in CPU processes (gloo): DistributedDataParallel without device_ids.

detectron2's ``launch`` already picks gloo on a machine without a GPU, but ``DefaultTrainer.__init__`` wraps
the model with ``create_ddp_model``, which passes ``device_ids=[local rank]``; torch refuses those for a
CPU module ("device_ids ... only work with single-device/multiple-device GPU modules"). For MODEL.DEVICE
"cpu" train_net.py builds its trainer inside ``cpu_ddp(cfg)``, so multi-process and multi-machine runs
work, and are tested, on CPUs (tests/det/test_multinode.py). On GPUs nothing changes.
"""
import contextlib

import detectron2.engine.defaults as defaults

__all__ = ["cpu_ddp"]


@contextlib.contextmanager
def cpu_ddp(cfg):
    """While open, and only for MODEL.DEVICE "cpu": detectron2's create_ddp_model without device_ids."""
    if not cfg.MODEL.DEVICE.startswith("cpu"):
        yield
        return
    create_ddp_model = defaults.create_ddp_model

    def without_device_ids(model, **kwargs):
        kwargs.setdefault("device_ids", None)  # a CPU module: DDP reduces over the process group alone
        return create_ddp_model(model, **kwargs)

    defaults.create_ddp_model = without_device_ids  # DefaultTrainer.__init__ looks it up in its module
    try:
        yield
    finally:
        defaults.create_ddp_model = create_ddp_model
