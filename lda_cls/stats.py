"""Class statistics of a long-tailed training set, without decoding any image.

    python -m lda_cls.stats --dataset cifar10_lt --data-root DIR [--plot out.png] [KEY VALUE ...]

Prints the number of images and classes, max/min images per class, the
imbalance ratio, and how many classes (and images) fall in the many (> 100),
medium (20-100) and few (< 20) splits; ``--plot`` draws the sorted class-count
histogram with the three splits shaded.
"""
import argparse
import json
import sys
from typing import List, Optional

import numpy as np

from lda_common.cli import add_debug_flag, run_cli

from .data import SHOT_NAMES, build_dataset, class_counts_of, shot_groups
from .train import DATASETS, setup_cfg


def class_statistics(class_counts, many_threshold: int = 100, few_threshold: int = 20) -> dict:
    counts = np.asarray(class_counts, dtype=np.int64)
    groups = shot_groups(counts, many_threshold, few_threshold)
    nonzero = counts[counts > 0]
    return {
        "num_images": int(counts.sum()),
        "num_classes": int(len(counts)),
        "max_per_class": int(counts.max()),
        "min_per_class": int(counts.min()),
        "imbalance_ratio": float(nonzero.max() / nonzero.min()) if len(nonzero) else None,
        "classes_per_split": {name: int((groups == g).sum()) for g, name in enumerate(SHOT_NAMES)},
        "images_per_split": {name: int(counts[groups == g].sum()) for g, name in enumerate(SHOT_NAMES)},
    }


def plot_histogram(class_counts, path: str, title: str, many_threshold: int = 100, few_threshold: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.sort(np.asarray(class_counts))[::-1]
    groups = shot_groups(counts, many_threshold, few_threshold)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(np.arange(len(counts)), counts, width=1.0, color="tab:blue")
    colours = {"many": "tab:green", "medium": "tab:orange", "few": "tab:red"}
    for g, name in enumerate(SHOT_NAMES):
        members = np.flatnonzero(groups == g)
        if len(members):
            ax.axvspan(members[0] - 0.5, members[-1] + 0.5, color=colours[name], alpha=0.15,
                       label=f"{name} ({len(members)} classes)")
    ax.set_yscale("log")
    ax.set_xlabel("class (sorted by training images)")
    ax.set_ylabel("training images")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS)
    parser.add_argument("--config-file")
    parser.add_argument("--data-root")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--plot", help="write the sorted class-count histogram to this image file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_debug_flag(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    args.output_dir, args.method = "unused", None
    cfg = setup_cfg(args, parser)
    dataset, num_classes = build_dataset(cfg, args.split, load_images=False)
    if dataset is None:
        parser.error(f"{cfg.DATASET.NAME} has no {args.split} split")
    counts = class_counts_of(dataset, num_classes)
    if args.split != "train":
        print("note: many/medium/few below use this split's own counts", file=sys.stderr)
    stats = {"dataset": cfg.DATASET.NAME, "split": args.split,
             **class_statistics(counts, cfg.TEST.MANY_THRESHOLD, cfg.TEST.FEW_THRESHOLD)}
    if args.json:
        print(json.dumps(stats))
    else:
        print(f"{stats['dataset']} ({args.split}): {stats['num_images']} images, {stats['num_classes']} classes")
        print(f"  per class: max {stats['max_per_class']}, min {stats['min_per_class']}, "
              f"imbalance ratio {stats['imbalance_ratio']:.2f}")
        for name in SHOT_NAMES:
            print(f"  {name:6s}: {stats['classes_per_split'][name]} classes, "
                  f"{stats['images_per_split'][name]} images")
    if args.plot:
        plot_histogram(counts, args.plot, f"{cfg.DATASET.NAME} {args.split}", cfg.TEST.MANY_THRESHOLD,
                       cfg.TEST.FEW_THRESHOLD)
        print(f"histogram written to {args.plot}")
    return stats


if __name__ == "__main__":
    run_cli(main)
