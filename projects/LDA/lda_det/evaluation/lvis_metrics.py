"""LVIS AP of a detection table with faster-coco-eval's compiled LVIS mode, a few categories at a time.

The metrics are lvis-api's (``lvis.LVISEval``, what detectron2's LVISEvaluator runs): AP, AP50, AP75,
APs / APm / APl, APr / APc / APf and AR@max_dets (x 100). ``tests/det/test_lvis_eval.py`` checks them
against it. Why the result is the same with less memory:

* LVIS's precision and recall of a category depend only on that category's ground truth and
  detections (all images), so the categories are evaluated in chunks of at most ``CHUNK_OBJECTS``
  ground-truth objects + detections, and their precision / recall columns are put side by side;
  lvis-api instead builds per-(image, category) tables of all 19,809 x 1,203 pairs at once.
* A chunk holds only the images with a ground-truth object or a detection of its categories: the others
  are neither true nor false positives of them (lvis-api skips their empty evaluations).
* LVIS's federated rule (a detection counts only where its category is annotated present or negative
  in the image) is applied to the table first, with numpy; the evaluation would drop those detections.
* The per-image limit of ``max_dets`` detections is LVISResults's (top scores, stable order), applied
  when the table is read; in each category at most that many remain per image, so faster-coco-eval's
  per-(image, category) limit ``maxDets = [max_dets]`` removes nothing more.
* lvis-api evaluates only objects and detections with 0 < area < inf (``LVIS.get_ann_ids``' default area
  range, open at both ends): an empty box or mask is neither a detection nor a ground-truth object there, nor
  does such an object make its category "present" for the federated rule. faster-coco-eval would count a
  zero-area detection as a false positive, so both are left out here too (``_evaluated``).
"""
import gc
import json
import logging
import os
import time
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
from detectron2.utils.file_io import PathManager

logger = logging.getLogger(__name__)

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
# Ground-truth objects + detections evaluated together (bounds the Python objects alive at once). At 2,000
# generated LVIS-profile images (600k detections, one thread) the peak RSS / wall time of the evaluation were
# 3,430 MB / 46 s at 250k, 1,373 MB / 22 s at 50k, 1,044 MB / 21 s at 20k, 893 MB / 30 s at 5k: smaller chunks
# are leaner and, down to ~10k, faster too (less garbage per collection); below that the per-chunk set-up wins.
CHUNK_OBJECTS = 20_000
# lvis-api's Params (lvis/eval.py): IoU thresholds, area ranges (all, small, medium, large), frequency groups.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
AREA_RANGES = ("all", "small", "medium", "large")
FREQUENCY_GROUPS = ("r", "c", "f")


class LVISGroundTruth:
    """An LVIS-format ground-truth json, indexed for the evaluation (read on the evaluating rank only)."""

    def __init__(self, json_file: str):
        self.json_file = json_file
        with PathManager.open(json_file, "r") as f:
            data = json.load(f)
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"{json_file}: no {key!r} list; not an LVIS-format json")
        self.images = data["images"]
        self.categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = np.asarray([c["id"] for c in self.categories], dtype=np.int64)
        bad = [c["id"] for c in self.categories if c.get("frequency") not in FREQUENCY_GROUPS]
        if bad:
            raise ValueError(f"{json_file}: categories {bad[:5]} ({len(bad)} in all) have no LVIS 'frequency' "
                             f"r / c / f, which APr / APc / APf need")
        self.image_ids = np.asarray([image["id"] for image in self.images], dtype=np.int64)
        self.image_index = {int(i): k for k, i in enumerate(self.image_ids)}
        if len(self.image_index) != len(self.images):
            raise ValueError(f"{json_file}: repeated image ids")
        category_index = {int(c): k for k, c in enumerate(self.category_ids)}
        self.annotations_by_category: List[list] = [[] for _ in self.categories]
        keys = []
        for ann in data["annotations"]:
            if not _evaluated(ann["area"]):
                continue  # lvis-api's get_ann_ids leaves it out (module docstring)
            k = category_index[ann["category_id"]]
            self.annotations_by_category[k].append(ann)
            keys.append(self.image_index[ann["image_id"]] * len(self.categories) + k)
        for index, image in enumerate(self.images):
            missing = [key for key in ("neg_category_ids", "not_exhaustive_category_ids") if key not in image]
            if missing:  # lvis-api fails on them too (KeyError)
                raise ValueError(f"{json_file}: image {image['id']} has no {missing[0]!r}: LVIS's federated "
                                 f"evaluation needs neg_category_ids and not_exhaustive_category_ids in every image")
            for category_id in image["neg_category_ids"]:
                keys.append(index * len(self.categories) + category_index[category_id])
        # (image index, category index) pairs annotated present or verified absent: LVIS's federated rule.
        self.labelled_pairs = np.unique(np.asarray(keys, dtype=np.int64))
        self.num_annotations = len(data["annotations"])
        self.category_index = category_index

    def frequency_groups(self) -> Dict[str, np.ndarray]:
        frequency = np.asarray([c["frequency"] for c in self.categories])
        return {group: np.flatnonzero(frequency == group) for group in FREQUENCY_GROUPS}


class DetectionTable:
    """Detections as columns (one row each, in the order LVISResults would number them); the masks'
    RLE strings live in a spill file and are read back per evaluated chunk."""

    def __init__(self, image_index, category_index, score, bbox, mask_size, rle_offset, rle_length, spill):
        self.image_index = image_index  # into LVISGroundTruth.images
        self.category_index = category_index  # into LVISGroundTruth.categories
        self.score = score
        self.bbox = bbox  # (n, 4) XYWH
        self.mask_size = mask_size  # (n, 2) height, width; -1 without a mask
        self.rle_offset = rle_offset
        self.rle_length = rle_length
        self.spill = spill  # a binary file with the RLE strings, or None

    def __len__(self):
        return len(self.score)

    @property
    def has_masks(self) -> bool:
        return len(self) > 0 and bool((self.mask_size[:, 0] >= 0).all())

    def rles(self, rows: np.ndarray) -> List[dict]:
        fd = self.spill.fileno()
        return [{"size": [int(h), int(w)], "counts": os.pread(fd, int(n), int(o))}
                for (h, w), o, n in zip(self.mask_size[rows], self.rle_offset[rows], self.rle_length[rows])]


def _chunks(objects_per_category: np.ndarray, budget: int) -> List[np.ndarray]:
    chunks, current, size = [], [], 0
    for k, n in enumerate(objects_per_category):
        if current and size + n > budget:
            chunks.append(np.asarray(current))
            current, size = [], 0
        current.append(k)
        size += int(n)
    if current:
        chunks.append(np.asarray(current))
    return chunks


def evaluate_lvis(gt: LVISGroundTruth, table: DetectionTable, task: str, max_dets: int,
                  chunk_objects: int = CHUNK_OBJECTS) -> Dict[str, float]:
    """lvis-api's metrics (x 100; -100 where lvis-api gives -1) of ``table`` for ``task`` ("bbox" / "segm")."""
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError as error:
        raise ImportError(f"the sharded LVIS evaluator needs faster-coco-eval ({error}): pip install "
                          f"faster-coco-eval==1.8.0 (Python >= 3.10), or set TEST.LVIS_EVALUATOR 'detectron2'") from None

    if task not in ("bbox", "segm"):
        raise ValueError(f"LVIS evaluation task {task!r} is not 'bbox' or 'segm'")
    if task == "segm" and not table.has_masks:
        raise ValueError("segm evaluation needs a mask with every detection")
    start = time.perf_counter()
    num_categories = len(gt.categories)
    keys = table.image_index.astype(np.int64) * num_categories + table.category_index
    kept = np.flatnonzero(np.isin(keys, gt.labelled_pairs))  # LVIS's federated rule
    det_category = table.category_index[kept]
    order = np.argsort(det_category, kind="stable")  # by category, each in table order
    rows_by_category = np.split(kept[order], np.searchsorted(det_category[order], np.arange(1, num_categories)))
    gt_counts = np.asarray([len(a) for a in gt.annotations_by_category])
    det_counts = np.asarray([len(r) for r in rows_by_category])

    num_t, num_r, num_a = len(IOU_THRESHOLDS), 101, len(AREA_RANGES)
    precision = -np.ones((num_t, num_r, num_categories, num_a))
    recall = -np.ones((num_t, num_categories, num_a))
    chunks = _chunks(gt_counts + det_counts, chunk_objects)
    for chunk in chunks:
        if gt_counts[chunk].sum() == 0:
            continue  # no ground truth: lvis-api leaves these categories at -1
        rows = np.concatenate([rows_by_category[k] for k in chunk])
        rows.sort()  # table order, as LVISResults numbers the detections
        gt_anns = [dict(a) for k in chunk for a in gt.annotations_by_category[k]]  # copies: the API adds keys
        images = np.unique(np.concatenate([table.image_index[rows],
                                           [gt.image_index[a["image_id"]] for a in gt_anns]]).astype(np.int64))
        image_dicts = [gt.images[i] for i in images]
        categories = [gt.categories[k] for k in chunk]
        detections = _detection_dicts(gt, table, rows, task)
        coco_gt = COCO({"images": image_dicts, "categories": categories, "annotations": gt_anns})
        coco_dt = COCO({"images": image_dicts, "categories": categories, "annotations": detections})
        evaluation = COCOeval_faster(coco_gt, coco_dt, task, lvis_style=True, print_function=logger.debug)
        evaluation.params.maxDets = [max_dets]
        evaluation.params.imgIds = [int(gt.image_ids[i]) for i in images]
        evaluation.params.catIds = [int(c["id"]) for c in categories]
        evaluation.evaluate()
        evaluation.accumulate()
        assert evaluation.params.catIds == sorted(evaluation.params.catIds)  # chunk is in category id order
        precision[:, :, chunk, :] = evaluation.eval["precision"][..., -1]
        recall[:, chunk, :] = evaluation.eval["recall"][..., -1]
        del evaluation, coco_gt, coco_dt, detections, gt_anns
        gc.collect()
    metrics = summarize(precision, recall, gt.frequency_groups())
    logger.info(f"LVIS {task}: {len(table)} detections ({len(kept)} on annotated or negative categories), "
                f"{gt.num_annotations} ground-truth objects, {len(chunks)} category chunks, "
                f"{time.perf_counter() - start:.1f} s; AR@{max_dets} {metrics['AR']:.2f} "
                f"(s {metrics['ARs']:.2f}, m {metrics['ARm']:.2f}, l {metrics['ARl']:.2f})")
    return {name: metrics[name] for name in METRICS}  # detectron2's LVISEvaluator's keys


def _evaluated(area: float) -> bool:
    """Whether lvis-api evaluates an object or detection of this area (LVIS.get_ann_ids: 0 < area < inf)."""
    return 0 < area < float("inf")


def _detection_dicts(gt: LVISGroundTruth, table: DetectionTable, rows: np.ndarray, task: str) -> List[dict]:
    image_ids = gt.image_ids[table.image_index[rows]].tolist()
    category_ids = gt.category_ids[table.category_index[rows]].tolist()
    scores = table.score[rows].tolist()
    if task == "bbox":
        boxes = table.bbox[rows]
        areas = (boxes[:, 2] * boxes[:, 3]).tolist()  # LVISResults: w * h
        boxes = boxes.tolist()
        return [{"id": n + 1, "image_id": i, "category_id": c, "score": s, "bbox": b, "area": a, "iscrowd": 0}
                for n, (i, c, s, b, a) in enumerate(zip(image_ids, category_ids, scores, boxes, areas))
                if _evaluated(a)]
    rles = table.rles(rows)
    # detectron2 drops the box for mask AP, so that LVISResults takes the mask's area and box.
    areas = mask_util.area(rles).astype(np.float64).tolist() if rles else []
    boxes = mask_util.toBbox(rles).tolist() if rles else []
    return [{"id": n + 1, "image_id": i, "category_id": c, "score": s, "segmentation": r, "bbox": b, "area": a,
             "iscrowd": 0}
            for n, (i, c, s, r, b, a) in enumerate(zip(image_ids, category_ids, scores, rles, boxes, areas))
            if _evaluated(a)]


def summarize(precision: np.ndarray, recall: np.ndarray, groups: Dict[str, np.ndarray]) -> Dict[str, float]:
    """lvis-api's LVISEval.summarize on precision [T, R, K, A] and recall [T, K, A], x 100."""
    def mean(values):
        values = values[values > -1]
        return float(np.mean(values)) * 100 if values.size else -100.0

    metrics = {
        "AP": mean(precision[..., 0]),
        "AP50": mean(precision[np.where(0.5 == IOU_THRESHOLDS)[0]][..., 0]),
        "AP75": mean(precision[np.where(0.75 == IOU_THRESHOLDS)[0]][..., 0]),
        "APs": mean(precision[..., 1]), "APm": mean(precision[..., 2]), "APl": mean(precision[..., 3]),
    }
    for group in FREQUENCY_GROUPS:
        metrics["AP" + group] = mean(precision[:, :, groups[group], 0])
    for a, name in enumerate(("", "s", "m", "l")):
        metrics[f"AR{name}"] = mean(recall[:, :, a])
    return metrics

