"""Process-group set-up and its faults, seeding and logging (atomic files: lda_common.atomic_files).

Every rank question of lda_cls is asked here (``rank``, ``world_size``, ``is_main_process``) and every
collective it needs outside the losses (``all_reduce_sum``, ``synchronize``, ``all_gather_objects``):
one answer whether or not torch.distributed is initialised. ``world_size`` is lda_core's, so the
losses and the trainer count the processes the same way."""
import datetime
import logging
import os
import random
import sys
import traceback
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist

from lda_core.distributed import world_size

__all__ = ["init_distributed", "CollectiveFailed", "collective_failure", "rank", "world_size", "is_main_process",
           "all_reduce_sum", "synchronize", "all_gather_objects", "seed_everything", "rng_state", "set_rng_state",
           "setup_logger"]


def init_distributed(timeout_s: float = 1800) -> torch.device:
    """Join the torchrun process group if there is one (NCCL on GPUs, gloo on CPU); return the device.
    ``timeout_s`` (DIST_TIMEOUT_S): how long a collective waits for the other ranks before it raises."""
    use_cuda = torch.cuda.is_available()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


class CollectiveFailed(RuntimeError):
    """A collective timed out or lost its peers: another rank stopped, hung or died (not a bug of this rank)."""
    user_error = True  # lda_common.cli prints the message alone: it already names the rank and the collective


def _collective_of(error: BaseException) -> str:
    """The collective the error came from, read off its traceback: the innermost torch.distributed call,
    else a backward pass (DDP all-reduces the gradients inside it), else the innermost frame."""
    frames = traceback.extract_tb(error.__traceback__)
    torch_dir = os.sep + "torch" + os.sep
    for index in range(len(frames) - 1, -1, -1):
        if os.sep + os.path.join("torch", "distributed") + os.sep in frames[index].filename:
            callers = [frame for frame in frames[:index] if torch_dir not in frame.filename]
            where = f" called by {os.path.basename(callers[-1].filename)}:{callers[-1].name}" if callers else ""
            return f"torch.distributed {frames[index].name}{where}"
    for frame in reversed(frames):
        if os.sep + os.path.join("torch", "autograd") + os.sep in frame.filename:
            return "DDP's gradient all-reduce (backward)"
    return frames[-1].name if frames else "a collective"


def collective_failure(error: BaseException, timeout_s: float) -> Optional[CollectiveFailed]:
    """``error`` as a :class:`CollectiveFailed` naming this rank and the collective, or None when it is not a
    failed collective (gloo's timeouts and lost connections, NCCL's watchdog)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    backend_error = getattr(dist, "DistBackendError", ())
    text = str(error)
    if not (isinstance(error, backend_error) or "Timed out" in text or "Connection closed by peer" in text
            or "Connection reset by peer" in text):
        return None
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return CollectiveFailed(
        f"rank {dist.get_rank()} of {dist.get_world_size()}: {_collective_of(error)} failed "
        f"(DIST_TIMEOUT_S {timeout_s:g} s): another rank stopped, hung or died; {first_line}")


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks, in place (unchanged in a single process)."""
    if world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def synchronize() -> None:
    """A barrier under torch.distributed, nothing in a single process."""
    if world_size() > 1:
        dist.barrier()


def all_gather_objects(obj: Any) -> list:
    """Every rank's ``obj``, in rank order ([obj] in a single process)."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def rng_state() -> Dict[str, Any]:
    """The RNG states as tensors, numbers and tuples only: a checkpoint holding them loads with
    ``torch.load(weights_only=True)`` (lda_common/checkpoint_io.py), numpy's array included."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state(stored) -> tuple:
    if isinstance(stored, dict):
        return (stored["kind"], np.asarray(stored["keys"].numpy(), dtype=np.uint32), stored["pos"],
                stored["has_gauss"], stored["cached_gaussian"])
    return stored  # np.random.get_state()'s tuple, as checkpoints before the tensor form hold it


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(tuple(state["python"]))
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def setup_logger(output_dir: str, name: str = "lda_cls", log_file: Optional[str] = "log.txt") -> logging.Logger:
    """Log to stdout and <output_dir>/<log_file> (None: stdout only) on the main process; warnings only elsewhere."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter("[%(asctime)s %(name)s] %(message)s", datefmt="%m/%d %H:%M:%S")
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(formatter)
    logger.addHandler(stream)
    if is_main_process() and log_file:
        file_handler = logging.FileHandler(os.path.join(output_dir, log_file))
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger
