"""Process-group set-up, seeding, logging and atomic checkpoint files.

Every rank question of lda_cls is asked here (``rank``, ``world_size``, ``is_main_process``) and every
collective it needs outside the losses (``all_reduce_sum``, ``synchronize``, ``all_gather_objects``):
one answer whether or not torch.distributed is initialised. ``world_size`` is lda_core's, so the
losses and the trainer count the processes the same way."""
import errno
import json
import logging
import math
import os
import random
import re
import secrets
import sys
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist

from lda_core.distributed import world_size

__all__ = ["init_distributed", "rank", "world_size", "is_main_process", "all_reduce_sum", "synchronize",
           "all_gather_objects", "seed_everything", "rng_state",
           "set_rng_state", "atomic_write", "atomic_save", "atomic_write_text", "temporary_path", "is_temporary",
           "setup_logger", "json_safe", "strict_json_dumps"]


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
    ``torch.load(weights_only=True)`` (lda_cls/checkpoint_io.py), numpy's array included."""
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


# Every atomic write goes through a temporary name unique to its writer (pid + random): two processes
# writing the same file never share one, and a temporary left by a killed run is recognisable as such.
TEMPORARY_SUFFIX = re.compile(r"\.\d+-[0-9a-f]{8}\.tmp$")


def temporary_path(path: str) -> str:
    """A fresh temporary name next to ``path`` (same directory: os.replace stays atomic)."""
    return f"{path}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def is_temporary(name: str) -> bool:
    """Whether a file name is one of ``temporary_path``'s."""
    return TEMPORARY_SUFFIX.search(name) is not None


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)``, then rename tmp to ``path``; a crash or a full disk never leaves a half-written ``path``."""
    tmp = temporary_path(path)
    try:
        try:
            write(tmp)
            os.replace(tmp, path)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise OSError(errno.ENOSPC, f"no space left on device while writing {path} "
                                            f"(the previous file, if any, is unchanged)") from error
            raise
        except RuntimeError as error:
            # torch's zip writer reports a short write (a full disk) as "unexpected pos A vs B".
            if "unexpected pos" in str(error):
                raise OSError(errno.ENOSPC, f"no space left on device while writing {path} (torch: {error}; "
                                            f"the previous file, if any, is unchanged)") from error
            raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(obj: Any, path: str) -> None:
    """torch.save to a temporary file of this writer's own, then rename."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str, text: str) -> None:
    """Write a text file (config.yaml, results.json) as atomic_save writes checkpoints."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write(path, write)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN / inf float replaced by None, so that it serialises as strict JSON (null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def strict_json_dumps(value: Any, **kwargs) -> str:
    """json.dumps that writes null for NaN / inf (bare NaN is not JSON; strict parsers reject it)."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


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
