"""Process-group set-up, seeding and logging (atomic files: lda_common.atomic_files)."""
import logging
import os
import random
import sys
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["init_distributed", "rank", "world_size", "is_main_process", "seed_everything", "rng_state",
           "set_rng_state", "setup_logger"]


def init_distributed() -> torch.device:
    """Join the torchrun process group if there is one (NCCL on GPUs, gloo on CPU); return the device."""
    use_cuda = torch.cuda.is_available()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return rank() == 0


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
