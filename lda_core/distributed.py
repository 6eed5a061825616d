"""The collectives behind LDALoss's global batch: gather rows from every rank, with a gradient.

Why not ``torch.distributed.nn.functional.all_gather``: torch 2.14 deprecates it, and its
suggested replacement in ``torch.distributed._functional_collectives`` is private and has
changed names between the torch versions we run (2.11 on GPUs, 2.14 here). What LDA needs
is small: the forward is an all-gather into one tensor; the backward gives each rank the *sum*
over ranks of the gradients with respect to its own rows (every rank computes the same loss
on the gathered rows), a reduce-scatter where the backend has one (NCCL), else an
all-reduce and this rank's slice (gloo).
"""
import torch
import torch.distributed as dist

__all__ = ["world_size", "gather_rows", "gather_rows_with_grad"]

# torch 2.14 renames the tensor collectives (the old names warn); torch 2.11 has only the old ones.
_all_gather_rows = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_rows = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def world_size() -> int:
    """Number of processes of the default group; 1 without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """All ranks' ``tensor`` (same shape on every rank) concatenated along dim 0; no gradient."""
    gathered = tensor.new_empty((world_size() * tensor.shape[0],) + tuple(tensor.shape[1:]))
    _all_gather_rows(gathered, tensor.contiguous())
    return gathered


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor):
        ctx.rows = tensor.shape[0]
        return gather_rows(tensor)

    @staticmethod
    def backward(ctx, grad_gathered):
        grad_gathered = grad_gathered.contiguous()
        if dist.get_backend() == dist.Backend.NCCL:
            grad = grad_gathered.new_empty((ctx.rows,) + tuple(grad_gathered.shape[1:]))
            _reduce_scatter_rows(grad, grad_gathered)
            return grad
        dist.all_reduce(grad_gathered)
        start = dist.get_rank() * ctx.rows
        return grad_gathered[start:start + ctx.rows].clone()


def gather_rows_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``gather_rows`` whose backward sums every rank's gradient of this rank's rows."""
    return _GatherRows.apply(tensor)
