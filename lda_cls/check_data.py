"""Check an ImageNet-LT or Places-LT installation before a long run: split files, labels, image files.

    python -m lda_cls.check_data --dataset imagenet_lt --data-root datasets/imagenet \
        [--split-dir datasets/ImageNet_LT] [--list 10] [--no-image-headers] [--any-size]
    python -m lda_cls.check_data --dataset places_lt --data-root datasets/places365 [--places-layout auto]

The split files are OLTR's (Liu et al. 2019, github.com/zhmiao/OpenLongTailRecognition-OLTR, the
ImageNet_LT / Places_LT folders of its data release): one ``relative/path label`` per line, read as
``lda_cls.data.parse_split_file`` reads them during training. For each of train / val / test it reports,
per kind of problem, the total and the first --list examples: a split file that is missing, lines that are
not ``path label``, labels outside [0, classes), a training split without every class, image counts other
than the release's (unless --any-size), listed images that are missing, empty, or not images. Only an
image's header is read (PIL opens lazily), never its pixels. Exit status 0 when nothing is wrong, 1
otherwise, after the report and the expected layout.
"""
import argparse
import os
import sys
from typing import List, Optional, Tuple

from lda_common.cli import add_debug_flag, run_cli
from lda_common.problems import Problems

from .data.file_check import missing_files
from .data.places365 import PLACES_LAYOUTS, places365_release_path, resolve_places_layout

# Per dataset: classes, the split-file folder name, the file prefix, and the images per split of the release.
DATASETS = {
    "imagenet_lt": dict(classes=1000, folder="ImageNet_LT", prefix="ImageNet_LT",
                        counts={"train": 115846, "val": 20000, "test": 50000}),
    "places_lt": dict(classes=365, folder="Places_LT", prefix="Places_LT",
                      counts={"train": 62500, "val": 7300, "test": 36500}),
}
SPLITS = ("train", "val", "test")


def expected_layout(dataset: str, data_root: str, split_dir: str) -> str:
    spec = DATASETS[dataset]
    lines = [f"Expected layout ({dataset}; configs/cls/{dataset}.yaml's DATASET.ROOT and *_SPLIT_FILE):"]
    lines += [f"  {split_dir}/{spec['prefix']}_{split}.txt   (OLTR release: '<relative path> <label>' per line)"
              for split in SPLITS]
    if dataset == "imagenet_lt":
        lines += [f"  {data_root}/train/n01440764/n01440764_10026.JPEG   (ILSVRC-2012 train, class folders)",
                  f"  {data_root}/val/n01440764/ILSVRC2012_val_00000293.JPEG   (val sorted into class folders)"]
    else:
        lines += [f"  {data_root}/train/airfield/00000001.jpg, {data_root}/val/airfield/Places365_val_00000001.jpg"
                  "   (layout 'listed': as the split files spell them)",
                  f"  or {data_root}/train/a/airfield/00000001.jpg, {data_root}/val/Places365_val_00000001.jpg"
                  "   (layout 'release': data_256 / val_256 unpacked)"]
    return "\n".join(lines)


def read_split_file(path: str, classes: int, label: str, problems: Problems) -> List[Tuple[str, int]]:
    """The well-formed lines of a split file; each malformed one is a problem (all are counted, not just the first)."""
    if not os.path.isfile(path):
        problems.add(f"{label}: split file missing", path)
        return []
    samples = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                problems.add(f"{label}: lines that are not 'path label'", f"{path}:{number}: {line.rstrip()[:80]!r}")
                continue
            value = int(fields[1])
            if not 0 <= value < classes:
                problems.add(f"{label}: labels outside [0, {classes})", f"{path}:{number}: {value}")
                continue
            samples.append((fields[0], value))
    return samples


def _check_headers(root: str, paths: List[str], label: str, problems: Problems) -> None:
    from PIL import Image, UnidentifiedImageError
    for path in paths:
        full = os.path.join(root, path)
        if os.path.getsize(full) == 0:
            problems.add(f"{label}: image files empty", full)
            continue
        try:
            with Image.open(full):  # lazy: the header only
                pass
        except (UnidentifiedImageError, OSError) as error:
            problems.add(f"{label}: image files that are not images", f"{full} ({error})")


def check_split(dataset: str, split: str, data_root: str, split_dir: str, problems: Problems,
                places_layout: str = "auto", headers: bool = True, any_size: bool = False) -> dict:
    spec = DATASETS[dataset]
    label = f"{dataset} {split}"
    split_file = os.path.join(split_dir, f"{spec['prefix']}_{split}.txt")
    samples = read_split_file(split_file, spec["classes"], label, problems)
    counts = {"listed": len(samples), "classes": len({c for _, c in samples}), "missing": 0}
    if not samples:
        return counts
    if not any_size and len(samples) != spec["counts"][split]:
        problems.add(f"{label}: image count differs from the release",
                     f"{split_file}: {len(samples)} images, the release lists {spec['counts'][split]}")
    if split == "train" and not any_size and counts["classes"] != spec["classes"]:
        problems.add(f"{label}: classes without a training image",
                     f"{split_file}: {counts['classes']} of {spec['classes']} classes")
    paths = [path for path, _ in samples]
    if dataset == "places_lt":
        try:
            layout = resolve_places_layout(data_root, samples, places_layout, split_file)
        except (FileNotFoundError, ValueError) as error:
            problems.add(f"{label}: Places-365 layout", str(error))
            return counts
        if layout == "release":
            paths = [places365_release_path(path) for path in paths]
    missing = missing_files(data_root, paths)  # one directory listing per folder, no stat per file
    counts["missing"] = len(missing)
    for path in missing:
        problems.add(f"{label}: image files missing", os.path.join(data_root, path))
    if headers:
        absent = set(missing)
        _check_headers(data_root, [p for p in paths if p not in absent], label, problems)
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lda_cls.check_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--data-root", required=True, help="the image root (the config's DATASET.ROOT)")
    parser.add_argument("--split-dir", help="the folder of the split files (default: <data-root>/../ImageNet_LT "
                                            "or ../Places_LT, as configs/cls/*.yaml place them)")
    parser.add_argument("--places-layout", default="auto", choices=PLACES_LAYOUTS,
                        help="Places-365 layout (DATASET.PLACES_LAYOUT)")
    parser.add_argument("--list", type=int, default=10, help="examples listed per kind of problem")
    parser.add_argument("--no-image-headers", action="store_true",
                        help="only check that listed images exist (no header read)")
    parser.add_argument("--any-size", action="store_true",
                        help="a subset: skip the release's image counts and the every-class check")
    add_debug_flag(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    data_root = args.data_root.rstrip(os.sep) or os.sep
    split_dir = args.split_dir or os.path.join(os.path.dirname(os.path.abspath(data_root)),
                                               DATASETS[args.dataset]["folder"])
    problems = Problems(args.list)
    if not os.path.isdir(data_root):
        problems.add(f"{args.dataset}: image root missing", data_root)
    for split in SPLITS:
        counts = check_split(args.dataset, split, data_root, split_dir, problems, args.places_layout,
                             headers=not args.no_image_headers, any_size=args.any_size)
        print(f"{args.dataset} {split}: {counts['listed']} images listed, {counts['classes']} classes, "
              f"{counts['missing']} missing")
    if problems:
        print(problems.report())
        print(f"{sum(problems.totals.values())} problems.")
        print(expected_layout(args.dataset, data_root, split_dir))
        return 1
    print(f"{args.dataset} under {data_root} (split files in {split_dir}): no problems.")
    return 0


if __name__ == "__main__":
    run_cli(lambda argv: sys.exit(main(argv)))  # problems: exit 1 after the report; a crash: one "error:" line
