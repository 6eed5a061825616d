"""Recording the ops PyTorch dispatches, to find host syncs on the CPU without a GPU.

On a GPU, `.item()`, `bool(tensor)`, `.tolist()`, `torch.unique` and boolean-mask indexing all
synchronise with the host; they reach the dispatcher as the ops in SYNCING_OPS.
"""
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING_OPS = ("_local_scalar_dense", "nonzero", "unique", "masked_select", "_assert_async")


class RecordOps(TorchDispatchMode):
    """Inside ``with RecordOps() as recorder``, recorder.ops lists every dispatched op's name."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))
