#!/usr/bin/env python
"""Build lda_det/data/lvis_v1_train_category_counts.csv, the LVIS v1 class counts shipped with lda_det.

    python projects/LDA/tools/build_lvis_v1_counts.py ../shared/data/lvis_v1_train_category_counts.json

The input is the per-category statistics of lvis_v1_train.json (a JSON list of
{"id", "name", "frequency", "image_count", "instance_count"}, 1203 entries); the output
is the same table as CSV (~40 KB), so that an LVIS v1 model is built without the 1 GB
training json. The image counts are checked against detectron2's LVIS_CATEGORY_IMAGE_COUNT.
"""
import argparse
import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "..", "lda_det", "data", "lvis_v1_train_category_counts.csv")
FIELDS = ("id", "name", "frequency", "image_count", "instance_count")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("counts_json", help="lvis_v1_train_category_counts.json")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    with open(args.counts_json) as f:
        categories = sorted(json.load(f), key=lambda c: c["id"])
    missing = [(c.get("id"), k) for c in categories for k in FIELDS if k not in c]
    if missing:
        sys.exit(f"{args.counts_json}: entries lack fields {missing[:5]}")

    from detectron2.data.datasets.lvis_v1_category_image_count import LVIS_CATEGORY_IMAGE_COUNT
    expected = {c["id"]: c["image_count"] for c in LVIS_CATEGORY_IMAGE_COUNT}
    differing = [c["id"] for c in categories if expected.get(c["id"]) != c["image_count"]]
    if len(categories) != len(expected) or differing:
        sys.exit(f"{args.counts_json}: {len(categories)} categories, image counts differ from detectron2's "
                 f"LVIS_CATEGORY_IMAGE_COUNT for ids {differing[:10]}")

    tmp = args.output + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for category in categories:
            writer.writerow({k: category[k] for k in FIELDS})
    os.replace(tmp, args.output)
    print(f"wrote {len(categories)} categories, {sum(c['instance_count'] for c in categories)} instances "
          f"to {os.path.abspath(args.output)}")


if __name__ == "__main__":
    main()
