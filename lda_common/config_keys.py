"""Configs as flat ``{"SOLVER.BASE_LR": 0.05, ...}`` dicts: what resume checks and benchmarks compare key by key."""
from typing import Any, Dict, Mapping

__all__ = ["flatten_config"]


def flatten_config(node: Mapping, prefix: str = "") -> Dict[str, Any]:
    """Every leaf of a nested CfgNode or dict under its dotted key, as it is. To compare a config with one
    read back from YAML (which has no tuples), flatten ``CfgNode.load_cfg(cfg.dump())``."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
