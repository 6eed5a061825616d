"""An LVIS evaluator for LVIS v1 val's size: every rank writes its predictions to a shard file, rank 0
reads them from disk and evaluates with lvis_metrics (faster-coco-eval's LVIS mode, a few categories at a time).

detectron2's LVISEvaluator keeps every prediction of a rank in memory, pickles them all to rank 0
(``comm.gather``) and runs lvis-api there on all of them. Here:

* ``process`` encodes each image's detections as detectron2 does (``instances_to_coco_json``: XYWH box,
  score, compressed-RLE mask; category ids mapped back to the dataset's) and appends them as one JSON
  line ``{"image_id": ..., "instances": [LVIS result dicts]}`` to a temporary file of the rank;
* ``evaluate`` renames it into ``<output_dir>/lvis_shards/<dataset>/shard-RRRRR-of-WWWWW.jsonl`` (an
  atomic rename), gathers only each rank's counts (a few bytes), and rank 0 writes ``manifest.json``
  (atomic) and evaluates from the files: nothing of the predictions moves between ranks. All ranks must
  see OUTPUT_DIR (one machine, or a shared filesystem);
* rank 0 also writes detectron2's ``<output_dir>/lvis_instances_results.json`` (LVIS results format,
  e.g. for the test server or tools/analyze.py), copied from the shards' bytes without re-encoding;
* the shards and the manifest stay: if the evaluation fails or the job is killed after inference,
  ``evaluate_from_shards`` (``train_net.py --eval-only --eval-from-shards``) evaluates them again
  without the model. A new inference removes the manifest first, so shards of an inference that did
  not finish are never read.
"""
import contextlib
import glob
import json
import logging
import os
import re
import tempfile
import time
from array import array
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch
import detectron2.utils.comm as comm
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table

from lda_common.atomic_files import atomic_path, atomic_write_json, is_temporary, temporary_path

from .lvis_metrics import CHUNK_OBJECTS, METRICS, DetectionTable, LVISGroundTruth, evaluate_lvis

logger = logging.getLogger(__name__)

SHARD_FORMAT = "lda-lvis-shards-v1"
MANIFEST = "manifest.json"
RESULTS_FILE = "lvis_instances_results.json"  # detectron2's LVISEvaluator's name for the same content
_SHARD_NAME = re.compile(r"shard-(\d{5})-of-(\d{5})\.jsonl$")
_INSTANCES_KEY = b',"instances":['


def shard_directory(output_dir: str, dataset_name: str) -> str:
    return os.path.join(output_dir, "lvis_shards", dataset_name)


def shard_name(rank: int, world_size: int) -> str:
    return f"shard-{rank:05d}-of-{world_size:05d}.jsonl"


class ShardWriter:
    """One rank's predictions, one JSON line per image, renamed into place by ``close``.

    Plain files and os.replace (not PathManager): the rename must be atomic, i.e. on a local or
    shared POSIX filesystem."""

    def __init__(self, path: str):
        self.path = path
        self.tmp = temporary_path(path)
        self._file = open(self.tmp, "wb")
        self.images = self.instances = self.bytes = 0
        self.masks = None  # True / False once an instance was written

    def write(self, image_id: int, instances: Sequence[dict]) -> None:
        line = json.dumps({"image_id": image_id, "instances": list(instances)}, separators=(",", ":")).encode()
        self._file.write(line + b"\n")
        self.images += 1
        self.instances += len(instances)
        self.bytes += len(line) + 1
        if instances:
            has = all("segmentation" in instance for instance in instances)
            self.masks = has if self.masks is None else (self.masks and has)

    def close(self) -> dict:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)
        return {"file": os.path.basename(self.path), "images": self.images, "instances": self.instances,
                "bytes": self.bytes, "masks": bool(self.masks)}

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


class ShardedLVISEvaluator(DatasetEvaluator):
    """LVIS AP / APr / APc / APf for bbox and segm, equal to detectron2's LVISEvaluator (lvis-api) to 1e-4
    (tests/det/test_lvis_eval.py), from per-rank shard files; see the module docstring."""

    def __init__(self, dataset_name: str, output_dir: str, *, max_dets_per_image: Optional[int] = None,
                 tasks: Optional[Sequence[str]] = None, chunk_objects: int = CHUNK_OBJECTS):
        if not output_dir:
            raise ValueError("ShardedLVISEvaluator needs an output_dir: the prediction shards are written there")
        self._dataset_name = dataset_name
        self._metadata = MetadataCatalog.get(dataset_name)
        if not getattr(self._metadata, "json_file", None):
            raise ValueError(f"dataset {dataset_name!r} has no json_file in its metadata: the LVIS evaluation "
                             f"needs its LVIS-format ground truth")
        self._output_dir = output_dir
        self._shard_dir = shard_directory(output_dir, dataset_name)
        self._max_dets = 300 if max_dets_per_image is None else int(max_dets_per_image)  # LVIS's 300 by default
        if self._max_dets <= 0:
            raise ValueError(f"max_dets_per_image must be positive, got {max_dets_per_image}")
        self._tasks = tuple(tasks) if tasks else None
        self._chunk_objects = chunk_objects
        if hasattr(self._metadata, "thing_dataset_id_to_contiguous_id"):
            reverse = {v: k for k, v in self._metadata.thing_dataset_id_to_contiguous_id.items()}
            self._to_dataset_id = reverse.__getitem__
        else:  # LVIS: contiguous 0..C-1 -> ids 1..C, as detectron2's LVISEvaluator
            self._to_dataset_id = lambda contiguous: contiguous + 1
        self._writer = None

    # -- on every rank --------------------------------------------------------------------------------------
    def reset(self):
        if self._writer is not None:
            self._writer.discard()
        rank, world_size = comm.get_rank(), comm.get_world_size()
        PathManager.mkdirs(self._shard_dir)
        if rank == 0:  # a new inference: the shards on disk will no longer match the manifest
            manifest = os.path.join(self._shard_dir, MANIFEST)
            if os.path.exists(manifest):
                os.remove(manifest)
        path = os.path.join(self._shard_dir, shard_name(rank, world_size))
        for stale in glob.glob(f"{glob.escape(path)}.*.tmp"):
            if is_temporary(stale):
                os.remove(stale)  # this rank's shard of an inference that was killed
        self._writer = ShardWriter(path)

    def process(self, inputs, outputs):
        for input, output in zip(inputs, outputs):
            if "instances" not in output:
                raise ValueError("ShardedLVISEvaluator evaluates detections ('instances'); for proposals set "
                                 "TEST.LVIS_EVALUATOR 'detectron2'")
            results = instances_to_coco_json(output["instances"].to(torch.device("cpu")), input["image_id"])
            for result in results:
                result["category_id"] = self._to_dataset_id(result["category_id"])
            self._writer.write(input["image_id"], results)

    def evaluate(self):
        if self._writer is None:
            raise RuntimeError("ShardedLVISEvaluator.evaluate() before reset() / process()")
        summary = self._writer.close()
        self._writer = None
        summaries = comm.gather(summary, dst=0)  # counts only; also waits for every rank's shard
        if not comm.is_main_process():
            return {}
        write_manifest(self._shard_dir, self._dataset_name, self._metadata.json_file, summaries)
        return self.evaluate_from_shards()

    # -- on the evaluating process (rank 0) ------------------------------------------------------------------
    def evaluate_from_shards(self) -> Dict[str, Dict[str, float]]:
        """Evaluate the shards listed in the manifest of this evaluator's shard directory (no model needed)."""
        manifest = read_manifest(self._shard_dir, self._dataset_name)
        start = time.perf_counter()
        gt = LVISGroundTruth(PathManager.get_local_path(self._metadata.json_file))
        PathManager.mkdirs(self._output_dir)
        table = read_shards(self._shard_dir, manifest, gt, self._max_dets,
                            results_file=os.path.join(self._output_dir, RESULTS_FILE))
        logger.info(f"Read {len(table)} detections of {manifest['world_size']} shard(s) in "
                    f"{time.perf_counter() - start:.1f} s")
        results = OrderedDict()
        if gt.num_annotations == 0:
            logger.info("Annotations are not available for evaluation.")
            return results
        if len(table) == 0:
            logger.warning("No predictions from the model!")
            return OrderedDict(bbox={metric: float("nan") for metric in METRICS})
        tasks = self._tasks or (("bbox", "segm") if table.has_masks else ("bbox",))
        for task in sorted(tasks):  # bbox, then segm: each releases its objects before the next
            results[task] = evaluate_lvis(gt, table, task, self._max_dets, self._chunk_objects)
            logger.info(f"Evaluation results for {task}: \n" + create_small_table(results[task]))
        table.spill.close()
        return results


def write_manifest(shard_dir: str, dataset_name: str, json_file: str, summaries: Sequence[dict]) -> None:
    """Record the complete shard set (ShardWriter.close's summaries, in rank order); shard files of an earlier
    run with another number of processes are removed."""
    atomic_write_json(os.path.join(shard_dir, MANIFEST), {
        "format": SHARD_FORMAT, "dataset": dataset_name, "json_file": json_file,
        "world_size": len(summaries), "shards": list(summaries)}, indent=1)
    listed = {s["file"] for s in summaries}
    for path in glob.glob(os.path.join(shard_dir, "shard-*-of-*.jsonl")):
        if os.path.basename(path) not in listed:
            os.remove(path)


def read_manifest(shard_dir: str, dataset_name: str) -> dict:
    path = os.path.join(shard_dir, MANIFEST)
    if not os.path.isfile(path):
        present = sorted(os.path.basename(p) for p in glob.glob(os.path.join(shard_dir, "shard-*.jsonl")))
        raise FileNotFoundError(
            f"{path} not found: no complete set of LVIS prediction shards for {dataset_name!r} (shard files there: "
            f"{present[:4] or 'none'}). The manifest is written once every rank has written its shard; run the "
            f"inference again (train_net.py --eval-only, TEST.LVIS_EVALUATOR 'sharded')")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != SHARD_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {SHARD_FORMAT!r}")
    if manifest["dataset"] != dataset_name:
        raise ValueError(f"{path}: the shards are predictions on {manifest['dataset']!r}, not {dataset_name!r}")
    for shard in manifest["shards"]:
        shard_path = os.path.join(shard_dir, shard["file"])
        if not os.path.isfile(shard_path):
            raise FileNotFoundError(f"{shard_path} (listed in {path}) not found: every rank writes its shard under "
                                    f"OUTPUT_DIR, which must be on a filesystem that rank 0 sees (or set "
                                    f"TEST.LVIS_EVALUATOR 'detectron2')")
        if os.path.getsize(shard_path) != shard["bytes"]:
            raise ValueError(f"{shard_path}: {os.path.getsize(shard_path)} bytes, {path} lists {shard['bytes']}: "
                             f"the shard changed after the manifest was written")
    return manifest


def read_shards(shard_dir: str, manifest: dict, gt: LVISGroundTruth, max_dets: int,
                results_file: Optional[str] = None) -> DetectionTable:
    """Stream the manifest's shards into a DetectionTable (masks spilled to a temporary file beside them);
    at most ``max_dets`` detections per image, chosen as LVISResults does. With ``results_file``, the
    detections are also copied (all of them, as detectron2 writes them) into one LVIS results json."""
    image_index, category_index, rle_length, mask_h, mask_w = (array("q") for _ in range(5))
    score, boxes = array("d"), array("d")
    spill = tempfile.TemporaryFile(dir=shard_dir, prefix=".lvis-masks-")
    seen = np.zeros(len(gt.images), dtype=bool)
    with contextlib.ExitStack() as stack:
        out = None
        if results_file:  # written whole or not at all (lda_common.atomic_files)
            out = stack.enter_context(open(stack.enter_context(atomic_path(results_file)), "wb"))
            out.write(b"[")
        first = True
        for shard in manifest["shards"]:
            path = os.path.join(shard_dir, shard["file"])
            with open(path, "rb") as f:
                for line_number, line in enumerate(f, 1):
                    where = f"{path}:{line_number}"
                    try:
                        record = json.loads(line)
                        image_id, instances = record["image_id"], record["instances"]
                    except (ValueError, KeyError, TypeError) as error:
                        raise ValueError(f"{where}: not a shard line {{image_id, instances}} ({error})") from None
                    k = gt.image_index.get(image_id)
                    if k is None:
                        raise ValueError(f"{where}: image id {image_id} is not in {gt.json_file}")
                    if seen[k]:
                        raise ValueError(f"{where}: image id {image_id} is in the shards twice")
                    seen[k] = True
                    if out is not None and instances:
                        start = line.index(_INSTANCES_KEY) + len(_INSTANCES_KEY)
                        out.write((b"" if first else b",") + line[start:line.rindex(b"]}")])
                        first = False
                    if len(instances) > max_dets:  # LVISResults.limit_dets_per_image
                        instances = sorted(instances, key=lambda ann: ann["score"], reverse=True)[:max_dets]
                    _append(instances, k, gt, where, image_index, category_index, score, boxes,
                            rle_length, mask_h, mask_w, spill)
        if out is not None:
            out.write(b"]")
    spill.flush()  # DetectionTable.rles reads it with os.pread
    if not seen.all():
        logger.warning(f"The shards hold predictions for {int(seen.sum())} of the {len(seen)} images of "
                       f"{gt.json_file}; the others count as images without detections")
    lengths = np.frombuffer(rle_length, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))[:-1]]).astype(np.int64)
    return DetectionTable(
        image_index=np.frombuffer(image_index, dtype=np.int64), category_index=np.frombuffer(category_index, np.int64),
        score=np.frombuffer(score, dtype=np.float64), bbox=np.frombuffer(boxes, dtype=np.float64).reshape(-1, 4),
        mask_size=np.stack([np.frombuffer(mask_h, np.int64), np.frombuffer(mask_w, np.int64)], axis=1).reshape(-1, 2),
        rle_offset=offsets, rle_length=lengths, spill=spill)


def _append(instances, k, gt, where, image_index, category_index, score, boxes, rle_length, mask_h, mask_w, spill):
    try:
        categories = [gt.category_index[ann["category_id"]] for ann in instances]
        scores = [float(ann["score"]) for ann in instances]
        flat_boxes = [float(v) for ann in instances for v in ann["bbox"]]
        if len(flat_boxes) != 4 * len(instances):
            raise ValueError("a bbox is not [x, y, w, h]")
    except KeyError as error:
        raise ValueError(f"{where}: a detection without {error} or of a category not in {gt.json_file}") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: malformed detection ({error})") from None
    masks = bytearray()
    for ann in instances:
        rle = ann.get("segmentation")
        if rle is None:
            rle_length.append(-1)
            mask_h.append(-1)
            mask_w.append(-1)
            continue
        if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
            raise ValueError(f"{where}: a segmentation that is not an RLE {{size, counts}} (LVIS results need RLE)")
        counts = rle["counts"]
        if isinstance(counts, list):  # uncompressed RLE: compress it, as pycocotools would
            counts = mask_util.frPyObjects(rle, *rle["size"])["counts"]
        counts = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
        masks += counts
        rle_length.append(len(counts))
        mask_h.append(int(rle["size"][0]))
        mask_w.append(int(rle["size"][1]))
    spill.write(masks)
    image_index.extend([k] * len(instances))
    category_index.extend(categories)
    score.extend(scores)
    boxes.extend(flat_boxes)
