#!/usr/bin/env python
"""Check an LVIS v1 installation before a long run: both jsons, the COCO image folders, the categories.

    python projects/LDA/tools/check_lvis.py [--root $DETECTRON2_DATASETS] [--list 10] [--no-image-headers]

Where detectron2's built-in registration looks (detectron2/data/datasets/builtin.py), under --root
(default $DETECTRON2_DATASETS, else ./datasets):

    <root>/lvis/lvis_v1_train.json
    <root>/lvis/lvis_v1_val.json
    <root>/coco/train2017/*.jpg      (each image's folder and name come from its coco_url)
    <root>/coco/val2017/*.jpg

It reports, per kind of problem, the total and the first --list files / ids: a json that is missing,
unreadable or lacks images / annotations / categories; categories that differ from LVIS v1's 1,203 (ids,
names and, for the training json, image counts of the table shipped with lda_det); images without
id, height, width, coco_url, neg_category_ids or not_exhaustive_category_ids, or with repeated ids;
annotations of an unknown image or category, or without a 4-number bbox, a segmentation or an area;
image files that are missing, empty, not images, or whose size differs from the json's. Only each
image's header is read (PIL opens lazily), never its pixels. Exit status 0 when nothing is wrong, 1 otherwise.
"""
import argparse
import json
import os
import sys
from collections import OrderedDict
from typing import Dict

from lda_common.problems import Problems

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # lda_det, when run from a checkout

SPLITS = OrderedDict(lvis_v1_train=("coco/", "lvis/lvis_v1_train.json"),
                     lvis_v1_val=("coco/", "lvis/lvis_v1_val.json"))  # detectron2's _PREDEFINED_SPLITS_LVIS
IMAGE_KEYS = ("id", "height", "width", "coco_url", "neg_category_ids", "not_exhaustive_category_ids")


def expected_layout(root: str) -> str:
    return "\n".join([f"Expected layout (detectron2's built-in LVIS v1 registration, root {root}):",
                      f"  {root}/lvis/lvis_v1_train.json", f"  {root}/lvis/lvis_v1_val.json",
                      f"  {root}/coco/train2017/<12-digit id>.jpg", f"  {root}/coco/val2017/<12-digit id>.jpg",
                      "  (each image's folder and file name are the last two parts of its coco_url; set "
                      "DETECTRON2_DATASETS to the root)"])


def _check_categories(split: str, json_file: str, categories, problems: Problems) -> None:
    from lda_det.data.lvis_v1_counts import TABLE_PATH, lvis_v1_train_counts
    table = lvis_v1_train_counts()
    if len(categories) != len(table.ids):
        problems.add(f"{split}: category count", f"{json_file}: {len(categories)} categories, LVIS v1 has "
                                                 f"{len(table.ids)} ({TABLE_PATH})")
    by_id = {c.get("id"): c for c in categories if isinstance(c, dict)}
    for i, name, images in zip(table.ids.tolist(), table.names, table.image_count.tolist()):
        category = by_id.get(i)
        if category is None:
            problems.add(f"{split}: LVIS v1 categories missing", f"{json_file}: id {i} ({name})")
        elif category.get("name") != name:
            problems.add(f"{split}: category names differ from LVIS v1",
                         f"{json_file}: id {i} is {category.get('name')!r}, LVIS v1's is {name!r}")
        elif split == "lvis_v1_train" and category.get("image_count") != images:
            problems.add(f"{split}: category image counts differ from LVIS v1 train",
                         f"{json_file}: id {i} ({name}) image_count {category.get('image_count')}, table {images}")
    known = set(table.ids.tolist())
    for c in categories:
        if not isinstance(c, dict) or c.get("id") not in known:
            problems.add(f"{split}: categories not in LVIS v1", f"{json_file}: {str(c)[:80]}")


def _image_path(image_root: str, image: dict) -> str:
    split_folder, file_name = image["coco_url"].split("/")[-2:]  # detectron2's load_lvis_json
    return os.path.join(image_root + split_folder, file_name)


def _check_image_file(path: str, image: dict, split: str, problems: Problems, headers: bool) -> None:
    try:
        size = os.stat(path).st_size
    except OSError:
        problems.add(f"{split}: image files missing", path)
        return
    if size == 0:
        problems.add(f"{split}: image files empty", path)
        return
    if not headers:
        return
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:  # lazy: the header only
            width, height = im.size
    except (UnidentifiedImageError, OSError) as error:
        problems.add(f"{split}: image files that are not images", f"{path} ({error})")
        return
    if (width, height) != (image.get("width"), image.get("height")):
        problems.add(f"{split}: image sizes differ from the json",
                     f"{path}: {width}x{height}, json {image.get('width')}x{image.get('height')} (id {image.get('id')})")


def check_split(split: str, root: str, problems: Problems, headers: bool = True) -> Dict[str, int]:
    image_root_rel, json_rel = SPLITS[split]
    json_file, image_root = os.path.join(root, json_rel), os.path.join(root, image_root_rel)
    counts = {"images": 0, "annotations": 0, "image_files": 0}
    if not os.path.isfile(json_file):
        problems.add(f"{split}: json missing", json_file)
        return counts
    try:
        with open(json_file) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        problems.add(f"{split}: json unreadable", f"{json_file} ({error})")
        return counts
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        problems.add(f"{split}: json without an LVIS list", f"{json_file}: no {missing} list")
        return counts
    _check_categories(split, json_file, data["categories"], problems)
    category_ids = {c.get("id") for c in data["categories"] if isinstance(c, dict)}
    image_ids = set()
    for image in data["images"]:
        counts["images"] += 1
        absent = [key for key in IMAGE_KEYS if key not in image]
        if absent:
            problems.add(f"{split}: images missing fields", f"{json_file}: image {image.get('id')} has no {absent}")
        if image.get("id") in image_ids:
            problems.add(f"{split}: repeated image ids", f"{json_file}: id {image.get('id')}")
        image_ids.add(image.get("id"))
        if isinstance(image.get("coco_url"), str) and image["coco_url"].count("/") >= 1:
            counts["image_files"] += 1
            _check_image_file(_image_path(image_root, image), image, split, problems, headers)
    for ann in data["annotations"]:
        counts["annotations"] += 1
        where = f"{json_file}: annotation {ann.get('id')}"
        if ann.get("image_id") not in image_ids:
            problems.add(f"{split}: annotations of unknown images", f"{where}: image_id {ann.get('image_id')}")
        if ann.get("category_id") not in category_ids:
            problems.add(f"{split}: annotations of unknown categories", f"{where}: category_id {ann.get('category_id')}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            problems.add(f"{split}: annotations with a malformed bbox", f"{where}: bbox {bbox}")
        if not ann.get("segmentation") or "area" not in ann:
            problems.add(f"{split}: annotations without segmentation or area", where)
    return counts


def main(argv=None) -> int:
    from lda_common.cli import add_debug_flag
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
                        help="the folder holding lvis/ and coco/ (default: $DETECTRON2_DATASETS, else ./datasets)")
    parser.add_argument("--list", type=int, default=10, help="examples listed per kind of problem")
    parser.add_argument("--no-image-headers", action="store_true",
                        help="only check that image files exist and are not empty (no header read)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    problems = Problems(args.list)
    for split in SPLITS:
        counts = check_split(split, args.root, problems, headers=not args.no_image_headers)
        print(f"{split}: {counts['images']} images, {counts['annotations']} annotations, "
              f"{counts['image_files']} image files checked")
    if problems:
        print(problems.report())
        print(f"{sum(problems.totals.values())} problems.")
        print(expected_layout(args.root))
        return 1
    print(f"LVIS v1 under {args.root}: no problems.")
    return 0


if __name__ == "__main__":
    from lda_common.cli import run_cli
    run_cli(lambda argv: sys.exit(main(argv)))  # problems: exit 1 after the report; a crash: one "error:" line
