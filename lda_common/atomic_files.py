"""Files written whole or not at all: a crash, a kill or a full disk never leaves a half-written file.

Every write goes to a temporary name next to the target, unique to its writer (pid + random), is
flushed to disk, and is then renamed over the target (``os.replace``, atomic within a directory). Two
processes writing the same file never share a temporary, and one left by a killed run is
recognisable as such (``is_temporary``: lda_cls/run_dir.py removes them when it takes a run over).

One mechanism, ``atomic_path(path)`` (``atomic_write(path, write)`` as a callback), and one helper per
kind of content: ``atomic_save`` (torch.save), ``atomic_write_bytes``, ``atomic_write_text``,
``atomic_write_json`` (strict JSON, NaN as null).
"""
import contextlib
import errno
import os
import re
import secrets
from typing import Any, Callable, Iterator

import torch

from .strict_json import strict_json_dumps

__all__ = ["temporary_path", "is_temporary", "atomic_path", "atomic_write", "atomic_save", "atomic_write_bytes",
           "atomic_write_text", "atomic_write_json"]

TEMPORARY_SUFFIX = re.compile(r"\.\d+-[0-9a-f]{8}\.tmp$")


def temporary_path(path: str) -> str:
    """A fresh temporary name next to ``path`` (same directory: os.replace stays atomic)."""
    return f"{path}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def is_temporary(name: str) -> bool:
    """Whether a file name is one of ``temporary_path``'s."""
    return TEMPORARY_SUFFIX.search(name) is not None


def _flush_to_disk(path: str) -> None:
    # Without it a power loss after the rename can leave the new name pointing at unwritten blocks.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """The temporary name to write ``path``'s new content under: renamed over ``path`` when the block ends,
    removed when it raises (``path`` is then as it was). For writers that take a path, not a callback
    (lda_det's checkpointer opens it through detectron2's PathManager)."""
    tmp = temporary_path(path)
    try:
        try:
            yield tmp
            _flush_to_disk(tmp)
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


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)``, then rename tmp to ``path``; on any failure ``path`` is as it was and tmp is gone."""
    with atomic_path(path) as tmp:
        write(tmp)


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)``, atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """A binary file, atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str, text: str) -> None:
    """A text file (UTF-8), atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str, value: Any, **dumps_kwargs) -> None:
    """``value`` as strict JSON (NaN / inf as null, numpy values as numbers; ``strict_json``), atomically."""
    atomic_write_text(path, strict_json_dumps(value, **dumps_kwargs))
