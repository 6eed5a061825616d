"""Reading the project's torch files (checkpoints, weights, the dataset cache) without running any code in them.

A ``.pth`` file is a pickle: ``torch.load(..., weights_only=False)`` of a file from elsewhere can
run anything. Every file here is read with ``weights_only=True``, which builds tensors, numbers,
strings, lists, tuples and dicts only: everything lda_cls writes (the RNG states are stored as
tensors and numbers, ``lda_cls.utils.rng_state``) and the model weights of a detectron2 checkpoint
(projects/LDA/tools/analyze.py). Checkpoints written before that held numpy's RNG state
as an array; exactly the numpy globals that rebuild such an array are allowed on top
(``LEGACY_GLOBALS``). A file that needs any other global is refused, naming the file and the
global, and nothing in it is run.
"""
import contextlib
import pickle
import re

import numpy as np
import torch

__all__ = ["UntrustedFile", "LEGACY_GLOBALS", "load_checkpoint"]


def _legacy_globals():
    """numpy.ndarray and the functions that rebuild one (numpy's RNG state in older last_checkpoint.pth)."""
    try:
        reconstruct = np._core.multiarray._reconstruct  # numpy >= 2
    except AttributeError:
        reconstruct = np.core.multiarray._reconstruct
    allowed = [reconstruct, np.ndarray, np.dtype]
    uint32_dtype = type(np.dtype(np.uint32))  # numpy >= 1.25 pickles the dtype by its own class
    if uint32_dtype is not np.dtype:
        allowed.append(uint32_dtype)
    return allowed


LEGACY_GLOBALS = _legacy_globals()


class UntrustedFile(ValueError):
    """A file asked to run code (a pickled global outside the allow-list) while being read: refused."""


def _allowing_legacy():
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    return safe_globals(LEGACY_GLOBALS) if safe_globals is not None else contextlib.nullcontext()


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = next((line for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else "")
    return f"{type(error).__name__}: {detail}"


def load_checkpoint(path: str, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with the legacy allow-list.

    UntrustedFile when the file needs another global (nothing of it was run), ValueError naming the file
    when it is not a torch file or is damaged.
    """
    try:
        with _allowing_legacy():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if refused:
            raise UntrustedFile(f"{path} asks for {refused.group(1)} to be loaded, which no file lda_cls writes "
                                f"holds: refused, nothing in it was run (open it with torch.load(..., "
                                f"weights_only=False) only if you trust where it came from)") from None
        raise ValueError(f"cannot read checkpoint {path} (corrupt or not a torch file): {_first_line(error)}") from None
    except OSError:
        raise  # a missing or unreadable path says so itself
    except Exception as error:  # EOFError, zip errors, ...: the file is what the user needs
        raise ValueError(f"cannot read checkpoint {path} (corrupt or not a torch file): {_first_line(error)}") from None
