#!/usr/bin/env python
"""Expected size of every LDA loss term, and of its gradient on the logits, for a config.

    python projects/LDA/tools/loss_scale.py --config-file configs/LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml [--num-gpus 8]

For the config's class counts n_y (the LVIS v1 table shipped with lda_det, a registered
dataset, or MODEL.LDA.CLASS_COUNTS) and its sampler, it prints, per global batch and per
rank, as a function of delta acc (Eq. 6), the expected value of each term of the detection
loss (LOSS_NORMALIZATION included) and the expected gradient norm they put on the logits,
and the effective coefficient of the balanced risk: the factor c of the normalised balanced
risk R_u = E_{p_s}[N / (C n_y) CE(h(x), y)] in the loss, alpha excluded
(c = BALANCED_LOSS_WEIGHT x B_global / N for "official", BALANCED_LOSS_WEIGHT for "calibrated").

Assumptions, printed with the numbers:
* positives per image: BATCH_SIZE_PER_IMAGE x POSITIVE_FRACTION, an UPPER bound (images with
  few objects have fewer); sampled proposals per image: BATCH_SIZE_PER_IMAGE;
* positives follow the classes of the sampled instances; with RepeatFactorTrainingSampler an
  instance is drawn r(image) times as often (detectron2's repeat factors, from image counts):
  exact from the dataset dicts when they are at hand; for the shipped LVIS v1 table, from the
  class's own r(c) = max(1, sqrt(t / f_c)) (a lower bound: r(image) is the max over its classes);
* cross-entropy and gradient at initialisation (uniform logits): CE = ln C and
  |softmax - onehot| = sqrt(1 - 1/C); a trained classifier has smaller values.
"""
import argparse
import math
import os
from typing import Dict, Sequence

import numpy as np

from lda_common.cli import add_debug_flag, message_of, run_cli

DELTA_ACCS = (1.0, 5.0, 10.0, 20.0, 40.0)  # percentage points


def _setup_cfg(config_file: str, opts: Sequence[str]):
    from detectron2.config import get_cfg
    from lda_det import add_lda_config
    if not os.path.isfile(config_file):  # detectron2 would assert, which reads as a bug
        raise FileNotFoundError(f"config file not found: {config_file}")
    cfg = get_cfg()
    add_lda_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


def sampled_class_distribution(cfg, num_classes: int):
    """(p, note): the expected class distribution of sampled instances under the config's sampler."""
    from lda_det.class_counts import sampled_instance_counts

    counts, note = sampled_instance_counts(cfg, num_classes)
    return (None if counts is None else counts / counts.sum()), note


def loss_scale(cfg, num_gpus: int, delta_accs: Sequence[float] = DELTA_ACCS) -> Dict:
    """The numbers loss_scale.py prints, as a dict (see the module docstring)."""
    from lda_det.class_counts import class_counts_from_config
    from lda_det.roi_heads import box_predictor_name

    lda, heads = cfg.MODEL.LDA, cfg.MODEL.ROI_HEADS
    predictor = box_predictor_name(cfg)
    if predictor != "LDAOutputLayers":  # the other heads' losses have none of these terms
        raise ValueError(f"MODEL.ROI_HEADS.NAME {heads.NAME} builds the box predictor {predictor}: loss_scale.py "
                         f"tabulates the terms of LDA's loss, which only LDAOutputLayers has")
    if num_gpus < 1:
        raise ValueError(f"--num-gpus must be at least 1, got {num_gpus}")
    if cfg.SOLVER.IMS_PER_BATCH % num_gpus:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is not divisible by {num_gpus} GPUs")
    counts = np.maximum(np.asarray(class_counts_from_config(cfg), dtype=np.float64), 1)  # LDALoss: 0 -> 1
    num_classes, total = counts.size, counts.sum()
    p, sampling_note = sampled_class_distribution(cfg, num_classes)
    if p is None:
        p = counts / total
    images = {"global": cfg.SOLVER.IMS_PER_BATCH, "rank": cfg.SOLVER.IMS_PER_BATCH // num_gpus}
    positives = {k: v * heads.BATCH_SIZE_PER_IMAGE * heads.POSITIVE_FRACTION for k, v in images.items()}
    sampled = {k: v * heads.BATCH_SIZE_PER_IMAGE for k, v in images.items()}
    # Eq. 9 is multiplied by #positives / #sampled ("sampled"), global counts under DDP.
    normalization = positives["global"] / sampled["global"] if lda.LOSS_NORMALIZATION == "sampled" else 1.0
    calibrated_weights = total / (num_classes * counts)  # N / (C n_y): mean 1 over the training instances
    expected_weight = float(p @ calibrated_weights)  # E_{sampled}[N / (C n_y)]: > 1 under RFS
    rare_weight = float(calibrated_weights.max())
    if lda.SCALING == "official":
        coefficient = lda.BALANCED_LOSS_WEIGHT * positives["global"] / total
    elif lda.SCALING in ("calibrated", "normalized"):
        coefficient = lda.BALANCED_LOSS_WEIGHT
    else:
        raise ValueError(f"MODEL.LDA.SCALING {lda.SCALING!r} unknown to loss_scale.py")
    ce0, grad0 = math.log(num_classes), math.sqrt(1 - 1 / num_classes)
    rows = []
    for delta in delta_accs:
        gap = delta if lda.SCALING in ("official", "calibrated") else delta / 100  # Eq. 6: percent or fraction
        alpha = lda.FIXED_ALPHA if lda.FIXED_ALPHA >= 0 else gap ** lda.GAMMA
        balanced = coefficient * alpha
        row = {"delta_acc": delta, "alpha": alpha, "balanced_coefficient": balanced,
               # Expected terms of the loss (a global-batch value; each rank's share has the same mean).
               "loss_unbalanced": lda.UNBALANCED_LOSS_WEIGHT * ce0 * normalization,
               "loss_balanced": balanced * expected_weight * ce0 * normalization,
               # Summed over the batch's positives: sum_i |dL / dz_i| on the logits of h' and h.
               "grad_unbalanced": lda.UNBALANCED_LOSS_WEIGHT * grad0 * normalization,
               "grad_balanced": balanced * expected_weight * grad0 * normalization,
               # One positive of the rarest class: its share of the balanced term.
               "loss_one_rare_positive": balanced * rare_weight * ce0 * normalization / positives["global"]}
        rows.append(row)
    return {
        "num_gpus": num_gpus, "num_classes": num_classes, "total_count": total,
        "count_min": counts.min(), "count_max": counts.max(), "sampling": sampling_note,
        "images": images, "positives": positives, "sampled": sampled, "normalization": normalization,
        "expected_calibrated_weight": expected_weight, "rarest_calibrated_weight": rare_weight,
        "scaling": lda.SCALING, "balanced_loss_weight": lda.BALANCED_LOSS_WEIGHT,
        "effective_coefficient": coefficient,
        "local_batch_official_coefficient": lda.BALANCED_LOSS_WEIGHT * positives["rank"] / total,
        "official_equivalent_factor": coefficient * total / positives["global"],
        "rows": rows,
    }


def format_report(result: Dict, config_file: str) -> str:
    r, w = result, result["num_gpus"]
    lines = [
        f"{config_file}, {w} GPU(s): {r['images']['rank']} images per rank, {r['images']['global']} per global batch",
        f"classes C = {r['num_classes']}, N = sum n_y = {r['total_count']:.0f} (min n_y {r['count_min']:.0f}, "
        f"max {r['count_max']:.0f})",
        f"sampled positives' classes: {r['sampling']}",
        f"positives B (upper bound, BATCH_SIZE_PER_IMAGE x POSITIVE_FRACTION): {r['positives']['rank']:.0f} per rank, "
        f"{r['positives']['global']:.0f} per global batch; sampled proposals {r['sampled']['rank']} / "
        f"{r['sampled']['global']}",
        f"LOSS_NORMALIZATION factor on Eq. 9 (#positives / #sampled, global): {r['normalization']:.4g}",
        f"E[N / (C n_y)] over sampled positives: {r['expected_calibrated_weight']:.4g} (1 without re-sampling); "
        f"rarest class: {r['rarest_calibrated_weight']:.4g}",
        f"SCALING {r['scaling']!r}, BALANCED_LOSS_WEIGHT {r['balanced_loss_weight']:.4g}",
        f"EFFECTIVE COEFFICIENT of the normalised balanced risk (alpha excluded): {r['effective_coefficient']:.6g}",
        (f"  (each rank's loss on its own batch, as before global-batch DDP, gave f x B_rank / N = "
         f"{r['local_batch_official_coefficient']:.6g})" if r["scaling"] == "official" else
         f"  (the same strength with SCALING official: BALANCED_LOSS_WEIGHT = c x N / B_global = "
         f"{r['official_equivalent_factor']:.4g})"),
        "",
        "Expected terms at initialisation (CE = ln C), per global batch; each rank's loss share has the same mean,",
        "and the parameter gradients after DDP's averaging are the global batch's. Gradients: sum over the",
        "positives of |dL/dz| on the logits (per rank: the same sum over its own positives, before averaging).",
        "| delta acc (%) | alpha | c x alpha | R_s(h') term | alpha R_u(h) term | grad h' | grad h | one rarest positive |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(f"| {row['delta_acc']:g} | {row['alpha']:.4g} | {row['balanced_coefficient']:.4g} | "
                     f"{row['loss_unbalanced']:.4g} | {row['loss_balanced']:.4g} | {row['grad_unbalanced']:.4g} | "
                     f"{row['grad_balanced']:.4g} | {row['loss_one_rare_positive']:.4g} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--num-gpus", type=int, default=1)
    parser.add_argument("--delta-acc", type=float, nargs="+", default=list(DELTA_ACCS),
                        help="accuracy gaps (percentage points) to tabulate")
    add_debug_flag(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.num_gpus < 1:
        raise ValueError(f"--num-gpus must be at least 1, got {args.num_gpus}")
    cfg = _setup_cfg(args.config_file, args.opts)
    try:
        result = loss_scale(cfg, args.num_gpus, args.delta_acc)
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise ValueError(f"{args.config_file}: {message_of(error)}") from error
    print(format_report(result, args.config_file))


if __name__ == "__main__":
    run_cli(main)
