"""Command line: python -m lda_cls.analyze RUN_DIR [--compare OTHER_RUN_DIR ...] [--out DIR]

Draws the paper's analysis figures for a run of ``python -m lda_cls.train`` (and
overlays the runs given with --compare, e.g. the CE baseline), into DIR:
weight_norms.png (Fig. 4a), classifier_tsne.png (Fig. 1), per_class_accuracy.png,
intra_inter_distance.png (Fig. 4c), train_test_discrepancy.png (Fig. 4b),
alpha_delta_acc.png (Fig. 6b), tail_to_head_confusion.png, analysis.json (every
number) and report.html (self-contained: open it from disk).

Example:
  python -m lda_cls.analyze output/cifar10_lt_lda --compare output/cifar10_lt_ce --out analysis/
"""
import argparse
import logging
import os
from typing import List, Optional

from lda_analysis.pipeline import analyze_runs
from lda_analysis.report import text_table
from lda_common.cli import add_debug_flag, run_cli

from .analysis.collect import FEATURE_KINDS, collect_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lda_cls.analyze",
                                     description="Analysis figures and report of lda_cls runs",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("run_dir", help="output directory of python -m lda_cls.train")
    parser.add_argument("--compare", nargs="+", default=[], metavar="OTHER_RUN_DIR",
                        help="runs on the same training set to overlay (e.g. the CE baseline)")
    parser.add_argument("--out", help="output directory (default RUN_DIR/analysis)")
    parser.add_argument("--weights", help="checkpoint of RUN_DIR to analyze (default model_best.pth)")
    parser.add_argument("--feature", choices=FEATURE_KINDS, default="features",
                        help="features for d_intra/d_inter and CDD: pooled backbone features (default) or the "
                             "projection p(x) that Eq. 7-8 act on during training (LDA runs with p only)")
    parser.add_argument("--per-class", type=int,
                        help="images per class of the training and of the test set that enter CDD "
                             "(default min(100, 10000 / classes))")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsampling and t-SNE")
    parser.add_argument("--no-tsne", action="store_true", help="skip the t-SNE figure")
    parser.add_argument("--no-cache", action="store_true", help="recompute the forward passes")
    parser.add_argument("--device", help="torch device (default cuda if available, else cpu)")
    add_debug_flag(parser)
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="config overrides for every run, e.g. --opts DATASET.ROOT /data/cifar10 "
                             "(when the data moved since training)")
    return parser


def main(argv: Optional[List[str]] = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    opts = list(args.opts)
    if len(opts) % 2:
        parser.error(f"overrides must be KEY VALUE pairs, got {opts}")
    if args.per_class is not None and args.per_class < 2:
        parser.error("--per-class must be at least 2")
    out_dir = args.out or os.path.join(args.run_dir, "analysis")
    cache_dir = None if args.no_cache else os.path.join(out_dir, "features")
    runs = [collect_run(run_dir, cache_dir=cache_dir, weights=args.weights if index == 0 else None,
                        feature=args.feature, train_per_class=args.per_class, seed=args.seed, overrides=opts,
                        device=args.device)
            for index, run_dir in enumerate([args.run_dir] + list(args.compare))]
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        parser.error(f"runs need distinct directory names for the legends, got {names}")
    result = analyze_runs(runs, out_dir, cdd_max_per_class=args.per_class, seed=args.seed, tsne=not args.no_tsne)
    print(text_table(result["summary"]))
    print(f"report: {os.path.abspath(result['report'])}")
    return result


if __name__ == "__main__":
    run_cli(main)
