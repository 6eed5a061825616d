"""Before training: every image a dataset lists must exist (a directory listing, never a decode).

A missing test image would otherwise stop a run only when the test split is first
read, after all epochs of training.
"""
import os
from collections import defaultdict
from typing import List, Sequence

__all__ = ["missing_files", "check_files_exist"]

SHOWN = 5  # missing paths named in the error


def missing_files(root: str, paths: Sequence[str]) -> List[str]:
    """The entries of ``paths`` (relative to ``root``) that are not files, in list order.

    One ``os.scandir`` per directory instead of one stat per file: ImageNet-LT's 116k
    training images sit in 1,000 folders. ``DirEntry.is_file`` follows symbolic links,
    as ``os.path.isfile`` does. Only one folder's names are held at a time.
    """
    by_directory = defaultdict(list)
    for index, path in enumerate(paths):
        directory, name = os.path.split(os.path.join(root, path))
        by_directory[directory].append((index, name))
    missing = []
    for directory, entries in by_directory.items():
        try:
            with os.scandir(directory) as listing:
                files = {entry.name for entry in listing if entry.is_file()}
        except (FileNotFoundError, NotADirectoryError):
            files = set()
        missing.extend(index for index, name in entries if name not in files)
    return [paths[index] for index in sorted(missing)]


def check_files_exist(root: str, paths: Sequence[str], source: str) -> None:
    """Raise FileNotFoundError naming the first missing files of ``source`` (e.g. a split file) and their count."""
    missing = missing_files(root, paths)
    if missing:
        shown = ", ".join(os.path.join(root, path) for path in missing[:SHOWN])
        more = f" (and {len(missing) - SHOWN} more)" if len(missing) > SHOWN else ""
        raise FileNotFoundError(f"{len(missing)} of the {len(paths)} images listed by {source} are missing "
                                f"under {root}: {shown}{more}")
