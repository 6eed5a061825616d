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
import io
import json
import os

from lda_common.atomic_files import atomic_write_text
from lda_common.cli import add_debug_flag, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "..", "lda_det", "data", "lvis_v1_train_category_counts.csv")
FIELDS = ("id", "name", "frequency", "image_count", "instance_count")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("counts_json", help="lvis_v1_train_category_counts.json")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    with open(args.counts_json) as f:
        categories = sorted(json.load(f), key=lambda c: c["id"])
    missing = [(c.get("id"), k) for c in categories for k in FIELDS if k not in c]
    if missing:
        raise ValueError(f"{args.counts_json}: entries lack fields {missing[:5]}")

    from detectron2.data.datasets.lvis_v1_category_image_count import LVIS_CATEGORY_IMAGE_COUNT
    expected = {c["id"]: c["image_count"] for c in LVIS_CATEGORY_IMAGE_COUNT}
    differing = [c["id"] for c in categories if expected.get(c["id"]) != c["image_count"]]
    if len(categories) != len(expected) or differing:
        raise ValueError(f"{args.counts_json}: {len(categories)} categories, image counts differ from detectron2's "
                         f"LVIS_CATEGORY_IMAGE_COUNT for ids {differing[:10]}")

    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for category in categories:
        writer.writerow({k: category[k] for k in FIELDS})
    atomic_write_text(args.output, table.getvalue())  # a temporary of its own, then renamed
    print(f"wrote {len(categories)} categories, {sum(c['instance_count'] for c in categories)} instances "
          f"to {os.path.abspath(args.output)}")


if __name__ == "__main__":
    run_cli(main)
