"""LVIS evaluation for LVIS v1 val's size (train_net.py's default, TEST.LVIS_EVALUATOR "sharded"):
per-rank prediction shards on disk, merged and evaluated on rank 0 by faster-coco-eval's LVIS mode,
category chunk by category chunk; metrics equal to lvis-api's (detectron2's LVISEvaluator)."""
from .lvis_metrics import METRICS, DetectionTable, LVISGroundTruth, evaluate_lvis
from .sharded_lvis import (MANIFEST, RESULTS_FILE, ShardedLVISEvaluator, ShardWriter, read_manifest, read_shards,
                           shard_directory, shard_name, write_manifest)

__all__ = ["METRICS", "DetectionTable", "LVISGroundTruth", "evaluate_lvis", "MANIFEST", "RESULTS_FILE",
           "ShardedLVISEvaluator", "ShardWriter", "read_manifest", "read_shards", "shard_directory",
           "shard_name", "write_manifest"]
