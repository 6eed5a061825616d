"""Shared by test_lvis_eval.py and its 2-process worker: generated detections as a model's outputs."""
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

from lda_det.data import register_lvis_format


def register_json(name: str, json_file: str) -> None:
    """Register an LVIS-format json (categories 1..C) under ``name`` (again, if it was)."""
    with open(json_file) as f:
        categories = sorted(json.load(f)["categories"], key=lambda c: c["id"])
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_lvis_format(name, json_file, os.path.dirname(json_file) + os.sep, [c["name"] for c in categories])


def model_outputs(detections, image):
    """One image's generated detections (LVIS results, category ids 1..C) as a Mask R-CNN output."""
    height, width = image["height"], image["width"]
    instances = Instances((height, width))
    boxes = np.asarray([d["bbox"] for d in detections], dtype=np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]  # XYWH -> XYXY
    instances.pred_boxes = Boxes(torch.from_numpy(boxes))
    instances.scores = torch.tensor([d["score"] for d in detections], dtype=torch.float32)
    instances.pred_classes = torch.tensor([d["category_id"] - 1 for d in detections], dtype=torch.int64)
    rles = [dict(d["segmentation"], counts=d["segmentation"]["counts"].encode()) for d in detections]
    masks = mask_util.decode(rles) if rles else np.zeros((height, width, 0), np.uint8)
    instances.pred_masks = torch.from_numpy(masks.transpose(2, 0, 1).astype(bool))
    return {"instances": instances}


def run_evaluator(evaluator, images, detections, rank: int = 0, world_size: int = 1):
    """reset / process (this rank's images: every world_size-th) / evaluate, as inference_on_dataset does."""
    evaluator.reset()
    for image, image_detections in list(zip(images, detections))[rank::world_size]:
        evaluator.process([{"image_id": image["id"]}], [model_outputs(image_detections, image)])
    return evaluator.evaluate()
