#!/usr/bin/env python
"""What the pre-training decode check of validation and test images costs (lda_cls/data/decode_check.py).

    python benchmarks/bench_decode_check.py [--images 200] [--output benchmarks/results/decode_check.json]

Writes IMAGES JPEGs of ImageNet's typical size (500x375, quality 90) and of CIFAR's (32x32) to a temporary
folder and times, on one thread, a header-only open, the check's decode (1/8-scale DCT for a JPEG) and a
full decode, as ms per image and their ratio to the full decode; then the check's time on one process for
the evaluation splits of Places-LT (7,300 val + 36,500 test) and ImageNet-LT (20,000 val + 50,000 test),
an extrapolation from the per-image time (divide by ranks x workers). CIFAR's images are decoded in full
into its tensor cache when the dataset is built (the 32x32 row: 10,000 test images), so in-memory
datasets skip the check.
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lda_cls.data.decode_check import decode_error  # noqa: E402
from lda_common.atomic_files import atomic_write_json  # noqa: E402

EVAL_IMAGES = {"places_lt": ("500x375", 7_300 + 36_500),
               "imagenet_lt": ("500x375", 20_000 + 50_000)}


def write_jpegs(folder, count, width, height):
    rng = np.random.RandomState(0)
    paths = []
    for index in range(count):  # smooth content plus noise: file sizes like photographs' (~90 KB at 500x375)
        coarse = Image.fromarray(rng.randint(0, 255, (max(1, height // 8), max(1, width // 8), 3)).astype(np.uint8))
        pixels = np.asarray(coarse.resize((width, height), Image.BICUBIC)).astype(np.int16)
        pixels = np.clip(pixels + rng.randint(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"{width}x{height}_{index}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def header_only(path):
    with Image.open(path) as image:
        return image.size


def full_decode(path):
    with Image.open(path) as image:
        image.convert("RGB")


def ms_per_image(function, paths, repeats=3):
    best = float("inf")
    for _ in range(repeats):  # the fastest pass: the least disturbed by other load
        start = time.perf_counter()
        for path in paths:
            function(path)
        best = min(best, (time.perf_counter() - start) / len(paths) * 1e3)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "decode_check.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        for width, height in ((500, 375), (32, 32)):
            paths = write_jpegs(folder, args.images, width, height)
            timing = {name: ms_per_image(function, paths) for name, function in
                      (("header_ms", header_only), ("check_ms", decode_error), ("full_decode_ms", full_decode))}
            timing["check_over_full"] = timing["check_ms"] / timing["full_decode_ms"]
            timing["mean_kb"] = sum(os.path.getsize(p) for p in paths) / len(paths) / 1e3
            sizes[f"{width}x{height}"] = timing
    splits = {name: {"images": count, "check_s_one_process": sizes[size]["check_ms"] * count / 1e3}
              for name, (size, count) in EVAL_IMAGES.items()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"benchmark": "decode_check", "commit": commit, "images_per_size": args.images, "threads": 1,
              "cpu": platform.processor() or platform.machine(), "sizes": sizes, "eval_splits_extrapolated": splits,
              "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print("| image | KB | header ms | check ms | full decode ms | check / full |\n|---|---|---|---|---|---|")
    for size, t in sizes.items():
        print(f"| {size} JPEG | {t['mean_kb']:.1f} | {t['header_ms']:.3f} | {t['check_ms']:.3f} | "
              f"{t['full_decode_ms']:.3f} | {t['check_over_full']:.2f} |")
    for name, split in splits.items():
        print(f"{name}: {split['images']:,} val + test images, check {split['check_s_one_process']:.0f} s on one "
              f"process (extrapolated; divide by ranks x DATASET.NUM_WORKERS)")
    if args.output:
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        atomic_write_json(args.output, result)


if __name__ == "__main__":
    main()
