"""A synthetic long-tailed instance-segmentation dataset in LVIS format (the CPU demo).

24 categories, "<colour>_<shape>" for 6 shapes x 4 colours, drawn as polygons on
textured backgrounds. Training image counts follow LVIS's frequency groups: rare
(at most 10 images), common (11-100) and frequent (over 100); the validation split
shows every category in the same number of images. Category entries carry LVIS's
"frequency" ("r" / "c" / "f"), "image_count" and "instance_count", so the LVIS API
reports AP_r / AP_c / AP_f as on LVIS.

Generation is deterministic (fixed seeds, no dependence on the machine) and runs
once, on first use, into a cache directory; a second process finding it there
reuses it.
"""
import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

VERSION = "v1"  # bump when the generated data changes
IMAGE_SIZE = 128
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
COLOURS = {"red": (215, 45, 40), "green": (40, 170, 60), "blue": (45, 85, 225), "yellow": (235, 205, 35)}
CATEGORY_NAMES = tuple(f"{colour}_{shape}" for shape in SHAPES for colour in COLOURS)
# Training images per category (same order as CATEGORY_NAMES). Each frequency group
# covers every shape and every colour at least once, so rare classes are new
# combinations of a seen shape and a seen colour.
TRAIN_IMAGE_COUNTS = (
    # red  green  blue  yellow
    180,   6,     40,   120,   # circle
    14,    150,   3,    60,    # square
    110,   30,    200,  8,     # triangle
    5,     80,    130,  18,    # diamond
    70,    10,    25,   160,   # star
    140,   115,   4,    7,     # cross
)
VAL_IMAGES_PER_CATEGORY = 8
MAX_CATEGORIES_PER_IMAGE = 4
SPLITS = {"train": 0, "val": 1}  # split -> seed offset


def lvis_frequency(image_count: int) -> str:
    """LVIS's frequency group of a category from its number of training images."""
    return "r" if image_count <= 10 else ("c" if image_count <= 100 else "f")


def default_root() -> str:
    """$LDA_DATASETS/synthetic_lt_<version>; without it, under the user's cache: $XDG_CACHE_HOME/lda (~/.cache/lda).

    Never next to the code, which may be a read-only site-packages.
    """
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    base = os.environ.get("LDA_DATASETS") or os.path.join(cache, "lda")
    return os.path.join(base, f"synthetic_lt_{VERSION}")


def json_path(root: str, split: str) -> str:
    return os.path.join(root, f"synthetic_lt_{split}.json")


def ensure_generated(root: str, generator=None) -> str:
    """Generate the dataset into ``root`` unless it is there; return ``root``.

    ``generator(staging_dir)`` writes the files (default: ``generate``, this module's profile).
    """
    if os.path.isfile(os.path.join(root, "COMPLETE")):
        return root
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".synthetic_lt-", dir=parent)
    try:
        logger.info(f"Generating the synthetic long-tailed dataset into {root} ...")
        (generator or generate)(staging)
        with open(os.path.join(staging, "COMPLETE"), "w") as f:
            f.write(VERSION + "\n")
        try:
            os.rename(staging, root)  # atomic; fails if another process got there first
        except OSError:
            if not os.path.isfile(os.path.join(root, "COMPLETE")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def generate(root: str, train_image_counts=TRAIN_IMAGE_COUNTS, val_images_per_category: int = VAL_IMAGES_PER_CATEGORY,
             second_instance_probabilities=None) -> None:
    """Write <root>/{train,val}/*.png and the two LVIS json files.

    Other class-frequency profiles (synthetic_lvis_profile.py) pass their own training image
    counts and, per category, the probabilities of a 2nd, 3rd, ... instance in an image
    (shape (C, k); default 0.2 for a second instance).
    """
    train_counts = np.asarray(train_image_counts)
    val_counts = np.full(len(CATEGORY_NAMES), val_images_per_category)
    extra = (np.full((len(CATEGORY_NAMES), 1), 0.2) if second_instance_probabilities is None
             else np.asarray(second_instance_probabilities, dtype=np.float64).reshape(len(CATEGORY_NAMES), -1))
    train = _generate_split(root, "train", train_counts, extra)
    val = _generate_split(root, "val", val_counts, extra)
    instance_counts = np.bincount([a["category_id"] - 1 for a in train["annotations"]],
                                  minlength=len(CATEGORY_NAMES))
    categories = [{
        "id": i + 1, "name": name, "synonyms": [name], "synset": f"{name}.n.01",
        "def": f"a {name.replace('_', ' ')} (synthetic)",
        "frequency": lvis_frequency(int(train_counts[i])),
        "image_count": int(train_counts[i]), "instance_count": int(instance_counts[i]),
    } for i, name in enumerate(CATEGORY_NAMES)]
    for split, data in (("train", train), ("val", val)):
        data["categories"] = categories
        with open(json_path(root, split), "w") as f:
            json.dump(data, f)


def _generate_split(root: str, split: str, image_counts: np.ndarray, extra_instance_probabilities: np.ndarray) -> Dict:
    rng = np.random.RandomState(20210 + SPLITS[split])
    os.makedirs(os.path.join(root, split), exist_ok=True)
    num_classes = len(CATEGORY_NAMES)
    remaining = image_counts.astype(np.int64).copy()
    images, annotations = [], []
    while remaining.sum() > 0:
        available = np.flatnonzero(remaining)
        k = min(int(rng.randint(1, MAX_CATEGORIES_PER_IMAGE + 1)), available.size)
        # Draw categories in proportion to the images they still need: the counts come out exact.
        chosen = rng.choice(available, size=k, replace=False, p=remaining[available] / remaining[available].sum())
        remaining[chosen] -= 1
        image_id = len(images) + 1
        duplicates = [c for c in chosen for _ in range(int((rng.rand(extra_instance_probabilities.shape[1])
                                                             < extra_instance_probabilities[c]).sum()))]
        image, polygons = _draw_image(rng, list(chosen), duplicates)
        file_name = f"{image_id:06d}.png"
        image.save(os.path.join(root, split, file_name))
        present = sorted({int(c) + 1 for c, _ in polygons})
        images.append({
            "id": image_id, "width": IMAGE_SIZE, "height": IMAGE_SIZE, "file_name": file_name,
            # detectron2's LVIS loader takes the split folder from coco_url.
            "coco_url": f"http://synthetic-lt/{split}/{file_name}",
            # Exhaustively annotated: every absent category is a verified negative.
            "neg_category_ids": [c for c in range(1, num_classes + 1) if c not in present],
            "not_exhaustive_category_ids": [],
        })
        for category, polygon in polygons:
            xs, ys = polygon[0::2], polygon[1::2]
            x0, y0 = min(xs), min(ys)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(category) + 1,
                "bbox": [x0, y0, max(xs) - x0, max(ys) - y0], "area": _polygon_area(xs, ys),
                "segmentation": [polygon],
            })
    return {"info": {"description": f"synthetic long-tailed LVIS-format dataset {VERSION}, {split}"},
            "licenses": [], "images": images, "annotations": annotations}


def _background(rng: np.random.RandomState) -> np.ndarray:
    """Muted stripes plus noise, so that colour alone does not find objects."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 30)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    base = rng.uniform(70, 170, size=3)
    tint = rng.uniform(-25, 25, size=3)
    image = base + stripes[..., None] * tint + rng.normal(0, 12, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> List[float]:
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        r = np.full_like(t, radius)
    elif shape == "star":
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    elif shape == "cross":
        a, b = radius, 0.35 * radius
        corners = np.array([(b, a), (b, b), (a, b), (a, -b), (b, -b), (b, -a),
                            (-b, -a), (-b, -b), (-a, -b), (-a, b), (-b, b), (-b, a)])
        t, r = np.arctan2(corners[:, 1], corners[:, 0]), np.hypot(corners[:, 0], corners[:, 1])
    else:
        sides = {"square": 4, "triangle": 3, "diamond": 4}[shape]
        t = np.linspace(0, 2 * np.pi, sides, endpoint=False) + (np.pi / 4 if shape == "square" else 0)
        r = np.full_like(t, radius)
    stretch = 0.6 if shape == "diamond" else 1.0  # a diamond is a rhombus, not a rotated square
    x, y = r * np.cos(t) * stretch, r * np.sin(t)
    xr = cx + x * np.cos(angle) - y * np.sin(angle)
    yr = cy + x * np.sin(angle) + y * np.cos(angle)
    points = np.clip(np.stack([xr, yr], axis=1), 0, IMAGE_SIZE - 1)
    return [round(float(v), 2) for v in points.reshape(-1)]


def _draw_image(rng: np.random.RandomState, categories, duplicates
                ) -> Tuple[Image.Image, List[Tuple[int, List[float]]]]:
    """One instance of every category in ``categories``, then second instances if there is room."""
    image = Image.fromarray(_background(rng))
    draw = ImageDraw.Draw(image)
    placed: List[Tuple[float, float, float]] = []
    polygons = []
    for index, category in enumerate(list(categories) + list(duplicates)):
        shape = SHAPES[category // len(COLOURS)]
        colour = np.asarray(list(COLOURS.values())[category % len(COLOURS)])
        for _ in range(50):  # rejection sampling of a free spot
            radius = rng.uniform(9, 22)
            cx, cy = rng.uniform(radius, IMAGE_SIZE - radius, size=2)
            if all(np.hypot(cx - x, cy - y) > radius + r + 2 for x, y, r in placed):
                break
        else:
            if index < len(categories):
                raise RuntimeError("no room for a first instance; the image counts would be off")
            continue  # no room for a second instance: leave it out
        placed.append((cx, cy, radius))
        polygon = _shape_polygon(shape, cx, cy, radius, rng.uniform(0, 2 * np.pi))
        fill = tuple(int(v) for v in np.clip(colour + rng.uniform(-20, 20, size=3), 0, 255))
        draw.polygon(polygon, fill=fill)
        polygons.append((category, polygon))
    return image, polygons


def _polygon_area(xs, ys) -> float:
    xs, ys = np.asarray(xs), np.asarray(ys)
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))
