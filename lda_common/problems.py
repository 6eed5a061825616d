"""A data check's findings: per kind of problem, a total and the first few examples.

Used by ``python -m lda_cls.check_data`` and ``projects/LDA/tools/check_lvis.py``: a tree of 100k images
with one bad folder should print a count and a handful of paths, not 100k lines.
"""
from collections import OrderedDict
from typing import Dict, List

__all__ = ["Problems"]


class Problems:
    """Problems by kind: a total and the first ``listed`` examples of each."""

    def __init__(self, listed: int):
        self.listed = listed
        self.kinds: Dict[str, List] = OrderedDict()
        self.totals: Dict[str, int] = {}

    def add(self, kind: str, example) -> None:
        self.totals[kind] = self.totals.get(kind, 0) + 1
        examples = self.kinds.setdefault(kind, [])
        if len(examples) < self.listed:
            examples.append(example)

    def __bool__(self):
        return bool(self.totals)

    def report(self) -> str:
        lines = []
        for kind, examples in self.kinds.items():
            total = self.totals[kind]
            lines.append(f"PROBLEM {kind}: {total}" + (f" (first {len(examples)})" if total > len(examples) else ""))
            lines += [f"    {example}" for example in examples]
        return "\n".join(lines)
