"""The per-process body of test_lvis_eval.py's 2-rank run (importable, so that spawn can pickle it)."""
import json

import torch
from detectron2.utils import comm

from lda_det.data.lvis_sized import generated_detections
from lda_det.evaluation import ShardedLVISEvaluator

from .lvis_eval_helpers import register_json, run_evaluator


def sharded_evaluation_on_rank(json_file: str, dataset_name: str, output_dir: str, per_image: int,
                               result_file: str) -> None:
    torch.set_num_threads(1)
    register_json(dataset_name, json_file)  # a spawned process starts without the parent's registrations
    with open(json_file) as f:
        images = json.load(f)["images"]
    with open(json_file) as f:
        detections = generated_detections(json.load(f), per_image=per_image)
    evaluator = ShardedLVISEvaluator(dataset_name, output_dir, max_dets_per_image=300)
    results = run_evaluator(evaluator, images, detections, comm.get_rank(), comm.get_world_size())
    if comm.is_main_process():
        with open(result_file, "w") as f:
            json.dump(results, f)
    else:
        assert results == {}
