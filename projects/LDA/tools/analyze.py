#!/usr/bin/env python
"""Analysis figures of LDA detection runs (LVIS format): classifier weight norms and AP per category.

    python projects/LDA/tools/analyze.py RUN_DIR [--compare BASELINE_DIR ...] [--out DIR]
        [--gt DATASET_NAME_OR_LVIS_JSON] [--iou-type bbox|segm]

RUN_DIR is a train_net.py output directory. From each run it reads

* the classifier weights of its checkpoint (``--weights``, default the file named in
  RUN_DIR/last_checkpoint, else model_final.pth): h (``box_predictor.balanced_score``)
  and h' (``unbalanced_score``) of an LDA head, else the C category rows of ``cls_score``,
  the extra rows dropped: every head of lda_det keeps its categories first, then
  detectron2's background row (baseline, federated, EQL, EQLv2: C + 1 rows) or Seesaw's
  two objectness rows (C + 2);
* the detections LVISEvaluator wrote (``--results``, default
  RUN_DIR/inference/lvis_instances_results.json), scored per category with the LVIS API;
* alpha and delta acc over iterations from RUN_DIR/metrics.json (LDA runs).

Category frequencies are the ``image_count`` (training images) of the ground-truth
json's categories, split as LVIS does: rare 1-10, common 11-100, frequent > 100.
The ground truth is ``--gt`` (a registered dataset name or a json path), else the
first of DATASETS.TEST in RUN_DIR/config.yaml. Writes weight_norms.png,
ap_per_category.png, alpha_delta_acc.png, analysis.json and a self-contained report.html into DIR
(default RUN_DIR/analysis).
"""
import argparse
import json
import logging
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from lda_analysis.figures import plot_per_class_metric, plot_training_curves, plot_weight_norms
from lda_analysis.history import read_metrics
from lda_analysis.metrics import split_means, weight_norms
from lda_analysis.report import Section, Table, write_report
from lda_analysis.splits import LVIS_SPLITS, SPLITS, class_splits
from lda_common.atomic_files import atomic_write_json
from lda_common.cli import add_debug_flag, run_cli

logger = logging.getLogger("lda_det.analyze")

LDA_ROLES = {"h": "balanced_score.weight", "h'": "unbalanced_score.weight"}
BASELINE_KEY = "cls_score.weight"
EXTRA_ROWS = {1: "background (softmax / sigmoid heads)", 2: "Seesaw's objectness"}  # after the C categories
RESULTS_FILE = os.path.join("inference", "lvis_instances_results.json")
LVIS_FREQUENCY = {"f": "many", "c": "medium", "r": "few"}


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
    """The model weights of a detectron2 checkpoint (.pth, or a model-zoo .pkl) as numpy arrays."""
    import pickle

    from detectron2.utils.file_io import PathManager

    from lda_common.checkpoint_io import load_checkpoint

    if not PathManager.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with PathManager.open(path, "rb") as handle:
        if path.endswith(".pkl"):  # Detectron / model-zoo pickles, read as DetectionCheckpointer does
            loaded = pickle.load(handle, encoding="latin1")
            loaded = loaded.get("blobs", loaded)
        else:  # weights_only: a checkpoint from elsewhere runs no code (lda_common/checkpoint_io.py)
            loaded = load_checkpoint(PathManager.get_local_path(path))
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict or a dict with key 'model'")
    return {key: np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
            for key, value in state.items() if hasattr(value, "shape")}


def _last_match(state: Dict[str, np.ndarray], suffix: str) -> Optional[str]:
    # A cascade has one box predictor per stage (box_predictor.0, .1, ...): take the last stage.
    # Whole key components only: "balanced_score.weight" must not match "unbalanced_score.weight".
    keys = sorted(key for key in state if "box_predictor" in key and key.endswith("." + suffix))
    return keys[-1] if keys else None


def classifier_weights(state: Dict[str, np.ndarray], num_classes: int, source: str) -> Dict[str, np.ndarray]:
    """{"h": (C, D), "h'": (C, D)} of an LDA head, or {"h": (C, D)} of a plain (C+1)-way cls_score."""
    found = {}
    for role, suffix in LDA_ROLES.items():
        key = _last_match(state, suffix)
        if key is not None:
            found[role] = state[key]
    if not found:
        key = _last_match(state, BASELINE_KEY)
        if key is None:
            raise ValueError(f"{source}: no box predictor classifier found (looked for keys ending in "
                             f"{', '.join(list(LDA_ROLES.values()) + [BASELINE_KEY])})")
        if state[key].shape[0] - num_classes not in EXTRA_ROWS:
            expected = " or ".join(f"{num_classes + extra} ({num_classes} categories of the ground truth + {what})"
                                   for extra, what in EXTRA_ROWS.items())
            raise ValueError(f"{source}: {key} has {state[key].shape[0]} rows, expected {expected}")
        found["h"] = state[key][:num_classes]
    for role, weight in found.items():
        if weight.shape[0] != num_classes:
            raise ValueError(f"{source}: classifier {role} has {weight.shape[0]} rows, the ground truth has "
                             f"{num_classes} categories")
    return found


def load_categories(gt_json: str):
    """(sorted category ids, names, training image counts) from an LVIS-format json."""
    with open(gt_json, encoding="utf-8") as handle:
        categories = sorted(json.load(handle)["categories"], key=lambda c: c["id"])
    missing = [c["id"] for c in categories if "image_count" not in c]
    if missing:
        raise ValueError(f"{gt_json}: categories {missing[:5]} have no 'image_count' (training images); "
                         f"an LVIS v1 annotation file has it for every category")
    counts = np.asarray([c["image_count"] for c in categories], dtype=np.int64)
    splits = class_splits(counts, LVIS_SPLITS)
    for category, split in zip(categories, splits):
        if "frequency" in category and LVIS_FREQUENCY.get(category["frequency"]) != split:
            logger.warning(f"{gt_json}: category {category['id']} has frequency {category['frequency']!r} "
                           f"but image_count {category['image_count']}")
    return ([c["id"] for c in categories], [c.get("name", str(c["id"])) for c in categories], counts)


def ap_per_category(gt_json: str, results, iou_type: str = "bbox", max_dets: int = 300) -> Dict[int, float]:
    """AP (IoU 0.50:0.95, all areas) of every category, from LVISEval's precision array.

    ``results`` is a list of detections or the path of LVISEvaluator's json. A
    category that is absent from the evaluated images gets NaN. The mean over a
    frequency group's categories is LVIS's APr / APc / APf.
    """
    from lvis import LVIS, LVISEval, LVISResults

    from lda_det import restore_numpy_aliases

    restore_numpy_aliases()  # lvis 0.5.3 uses np.float
    if isinstance(results, str):
        if not os.path.isfile(results):
            raise FileNotFoundError(f"detections not found: {results} (run train_net.py --eval-only first)")
        with open(results, encoding="utf-8") as handle:
            results = json.load(handle)
    gt = LVIS(gt_json)
    evaluation = LVISEval(gt, LVISResults(gt, results, max_dets=max_dets), iou_type)
    evaluation.run()
    precision = evaluation.eval["precision"]  # (IoU thresholds, recall thresholds, categories, areas)
    per_category = {}
    for index, category_id in enumerate(evaluation.params.cat_ids):
        values = precision[:, :, index, 0]  # area range 0 = all
        values = values[values > -1]
        per_category[category_id] = float(values.mean()) if values.size else float("nan")
    return per_category


def lda_curve(metrics_json: str) -> Dict[str, np.ndarray]:
    """alpha and delta acc per iteration from detectron2's ``metrics.json`` (LDAOutputLayers logs
    them as "lda/alpha", "lda/delta_acc"); empty arrays for a run that logged none (a baseline)."""
    rows = [(record["iteration"], record["lda/alpha"], record.get("lda/delta_acc", np.nan))
            for record in read_metrics(metrics_json) if "lda/alpha" in record and "iteration" in record]
    # A resumed run re-logs iterations: keep the last value of each.
    by_iteration = {iteration: (alpha, delta) for iteration, alpha, delta in rows}
    iterations = sorted(by_iteration)
    return {"iteration": np.asarray(iterations, dtype=np.float64),
            "alpha": np.asarray([by_iteration[i][0] for i in iterations], dtype=np.float64),
            "delta_acc": np.asarray([by_iteration[i][1] for i in iterations], dtype=np.float64)}


def find_weights(run_dir: str) -> str:
    pointer = os.path.join(run_dir, "last_checkpoint")
    if os.path.isfile(pointer):
        with open(pointer) as handle:
            name = handle.read().strip()
        if os.path.isfile(os.path.join(run_dir, name)):
            return os.path.join(run_dir, name)
    final = os.path.join(run_dir, "model_final.pth")
    if os.path.isfile(final):
        return final
    raise FileNotFoundError(f"no checkpoint in {run_dir}: neither last_checkpoint nor model_final.pth")


def gt_json_of(gt: Optional[str], run_dir: str) -> str:
    """A json path: ``gt`` itself, the json of the registered dataset ``gt``, or of the run's DATASETS.TEST[0]."""
    if gt and os.path.isfile(gt):
        return gt
    if not gt:
        config = os.path.join(run_dir, "config.yaml")
        if not os.path.isfile(config):
            raise FileNotFoundError(f"pass --gt: {config} is missing")
        from detectron2.config import get_cfg

        from lda_det import add_lda_config

        cfg = get_cfg()
        add_lda_config(cfg)
        cfg.set_new_allowed(True)  # tolerate keys of other projects in the run's config
        cfg.merge_from_file(config)
        if not cfg.DATASETS.TEST:
            raise ValueError(f"{config}: DATASETS.TEST is empty; pass --gt")
        gt = cfg.DATASETS.TEST[0]
    from detectron2.data import MetadataCatalog

    from lda_det.data import ensure_available

    ensure_available(gt)  # generates the synthetic demo, or names the missing file
    return MetadataCatalog.get(gt).json_file


def analyze(runs: Sequence[dict], gt_json: str, out_dir: str, iou_type: str = "bbox") -> dict:
    """runs: [{"name", "weights", "results", "metrics" (paths or None)}]; the first is the main run."""
    os.makedirs(out_dir, exist_ok=True)
    category_ids, names, counts = load_categories(gt_json)
    norms, aps = {}, {}
    for index, run in enumerate(runs):
        if run.get("weights"):
            state = load_state_dict(run["weights"])
            classifiers = classifier_weights(state, len(category_ids), run["weights"])
            if "h'" in classifiers:
                labels = {"h": f"{run['name']}: h (balanced)", "h'": f"{run['name']}: h' (unbalanced)"}
            else:
                labels = {"h": f"{run['name']}: (C+1)-way classifier"}
            for role in (["h", "h'"] if index == 0 else ["h"]):  # h' of the main run only, as Fig. 4a
                if role in classifiers:
                    norms[labels[role]] = weight_norms(classifiers[role])
        if run.get("results"):
            per_category = ap_per_category(gt_json, run["results"], iou_type)
            aps[run["name"]] = 100 * np.asarray([per_category.get(c, np.nan) for c in category_ids])
    sections = []
    numbers = {"gt": gt_json, "iou_type": iou_type, "runs": [r["name"] for r in runs]}
    if norms:
        path = os.path.join(out_dir, "weight_norms.png")
        table = plot_weight_norms(norms, counts, names, path, LVIS_SPLITS)
        sections.append(Section("Classifier weight norms per category (paper Fig. 4a)", path,
                                "L2 norm of each category's classifier weight vector, categories sorted by "
                                "training images; shading: LVIS rare / common / frequent.", table))
        numbers["weight_norms"] = norms
    means = {}
    if aps:
        means = {name: split_means(values, counts, LVIS_SPLITS) for name, values in aps.items()}
        path = os.path.join(out_dir, "ap_per_category.png")
        table = plot_per_class_metric(aps, means, counts, names, path,
                                      ylabel=f"{iou_type} AP of the category (%, IoU 0.50:0.95)",
                                      title="AP per category vs training images (dashed: APf / APc / APr)",
                                      column="AP %", rule=LVIS_SPLITS)
        sections.append(Section("AP per category against training frequency", path,
                                "LVISEval AP of each category (NaN: absent from the evaluated images) against "
                                "its training images; dashed segments are the rare / common / frequent means, "
                                "i.e. LVIS's APr / APc / APf.", table))
        numbers["ap"] = aps
        numbers["ap_means"] = means
    curves = {run["name"]: lda_curve(run["metrics"]) for run in runs if run.get("metrics")}
    curves = {name: curve for name, curve in curves.items() if curve["iteration"].size}
    if curves:
        path = os.path.join(out_dir, "alpha_delta_acc.png")
        sections.append(Section("alpha and delta acc over training (paper Fig. 6b)", path,
                                "From detectron2's metrics.json: the balance factor alpha (Eq. 6) and the "
                                "windowed accuracy gap of h' and h on the positive proposals.",
                                plot_training_curves(curves, path, x_key="iteration")))
    if not sections:
        raise ValueError("nothing to draw: no run has weights or detections")
    summary = Table(["run", "AP %", "APf %", "APc %", "APr %"],
                    [[name, m["all"], m["many"], m["medium"], m["few"]] for name, m in means.items()])
    report = write_report(os.path.join(out_dir, "report.html"), "LDA detection analysis: " +
                          ", ".join(r["name"] for r in runs), sections, summary,
                          [f"Ground truth: {gt_json} ({len(category_ids)} categories; "
                           + ", ".join(f"{LVIS_SPLITS.label(s)}: {int((class_splits(counts, LVIS_SPLITS) == s).sum())}"
                                       for s in SPLITS) + ")."])
    atomic_write_json(os.path.join(out_dir, "analysis.json"), numbers, indent=1)  # NaN (absent category) as null
    return {"report": report, "figures": [s.image_path for s in sections], "summary": summary}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("run_dir", help="train_net.py output directory of the LDA run")
    parser.add_argument("--compare", nargs="+", default=[], metavar="RUN_DIR", help="baseline runs to overlay")
    parser.add_argument("--out", help="output directory (default RUN_DIR/analysis)")
    parser.add_argument("--gt", help="registered dataset name or LVIS json (default: DATASETS.TEST[0] of the run)")
    parser.add_argument("--weights", help="checkpoint of RUN_DIR (default: last_checkpoint / model_final.pth)")
    parser.add_argument("--results", help=f"detections of RUN_DIR (default RUN_DIR/{RESULTS_FILE})")
    parser.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox")
    add_debug_flag(parser)
    return parser


def _run_entry(run_dir: str, weights: Optional[str], results: Optional[str]) -> dict:
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    default_results = os.path.join(run_dir, RESULTS_FILE)
    results = results or (default_results if os.path.isfile(default_results) else None)
    try:
        weights = weights or find_weights(run_dir)
    except FileNotFoundError as error:
        if results is None:
            raise
        logger.warning(f"{error}; drawing AP only")
        weights = None
    if results is None:
        logger.warning(f"{run_dir}: no {RESULTS_FILE}; drawing weight norms only")
    metrics = os.path.join(run_dir, "metrics.json")
    return {"name": os.path.basename(os.path.normpath(run_dir)), "weights": weights, "results": results,
            "metrics": metrics if os.path.isfile(metrics) else None}


def main(argv: Optional[List[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    runs = [_run_entry(args.run_dir, args.weights, args.results)]
    runs += [_run_entry(run_dir, None, None) for run_dir in args.compare]
    out = analyze(runs, gt_json_of(args.gt, args.run_dir), args.out or os.path.join(args.run_dir, "analysis"),
                  args.iou_type)
    for row in out["summary"].rows:
        print(row)
    print(f"report: {os.path.abspath(out['report'])}")
    return out


if __name__ == "__main__":
    run_cli(main)
