"""A generated LVIS-format evaluation case of LVIS v1's size per image: ground truth and detections.

For the LVIS evaluators' tests and benchmark (benchmarks/bench_lvis_eval.py), without the LVIS files:

* ``lvis_sized_ground_truth(num_images)``: LVIS v1's 1203 categories with their names, frequency groups
  and training image / instance counts (the table shipped with lda_det, lvis_v1_counts.py); per image
  Poisson(3.6 - 1) + 1 annotated categories drawn in proportion to their LVIS image counts (3.6 = LVIS
  v1 train's image counts summed over the categories / its images), each with its LVIS instances per
  image (instance_count / image_count, capped at 20) as the mean of 1 + Poisson; star-shaped polygon
  masks of log-uniform size on COCO-like image sizes; areas are the masks' pixel areas. Federated
  labels as LVIS has them: a few verified-absent categories per image (``neg_category_ids``), and one
  of the present categories marked not exhaustively annotated in about 30 % of the images.
* ``generated_detections(ground_truth, per_image)``: ``per_image`` detections of every image in the
  format of detectron2's ``instances_to_coco_json`` (XYWH box, score, compressed-RLE mask of the full
  image; ``category_id`` is the LVIS id): 1-3 jittered copies of every ground-truth object (its
  category, or a confused one present / negative in the image), the rest random boxes of categories
  present or negative in the image, or of any category (which LVIS's federated evaluation drops).
  Boxes and scores are float32 values, as a model's; many low scores are rounded to 1e-3, so that
  equal scores (ties in the ranking) occur; 0.3 % of the random boxes have zero width and an empty
  mask (a box clipped at the image border; lvis-api leaves zero-area detections out).

Deterministic for a seed. The statistics other than the category table are this generator's choices,
not LVIS's.
"""
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util

from .lvis_v1_counts import NUM_TRAIN_IMAGES, lvis_v1_train_counts

# (height, width) of generated images: COCO's common sizes.
IMAGE_SIZES = ((480, 640), (427, 640), (640, 480), (640, 427), (375, 500), (612, 612))
MAX_INSTANCES_PER_CATEGORY = 20
MEAN_NEGATIVE_CATEGORIES = 6.0
NOT_EXHAUSTIVE_PROBABILITY = 0.3
DEGENERATE_FRACTION = 0.003  # of the random detections: zero-width boxes with empty masks


def lvis_categories() -> List[Dict]:
    """LVIS v1's category records (id, name, frequency, image_count, instance_count, synset, synonyms)."""
    table = lvis_v1_train_counts()
    return [{"id": int(i), "name": name, "synset": f"{name}.n.01", "synonyms": [name], "def": name,
             "frequency": str(freq), "image_count": int(images), "instance_count": int(instances)}
            for i, name, freq, images, instances in zip(table.ids, table.names, table.frequency,
                                                       table.image_count, table.instance_count)]


def _star_polygon(rng, cx, cy, rx, ry, vertices):
    t = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    r = rng.uniform(0.55, 1.0, vertices)
    return np.stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)], axis=1)


def _clip_flat(points, height, width):
    points = np.stack([np.clip(points[:, 0], 0, width), np.clip(points[:, 1], 0, height)], axis=1)
    return [round(float(v), 2) for v in points.reshape(-1)]


def lvis_sized_ground_truth(num_images: int, seed: int = 0, first_image_id: int = 100,
                            prior_power: float = 1.0) -> Dict:
    """An LVIS v1-format ground-truth dict of ``num_images`` images (see the module docstring).

    Categories are drawn in proportion to image_count ** prior_power: 1 is LVIS's profile; a smaller
    power flattens it, so that a few dozen images already hold rare categories (the tests use 0.5).
    """
    rng = np.random.RandomState(seed)
    categories = lvis_categories()
    table = lvis_v1_train_counts()
    num_classes = len(categories)
    prior = table.image_count.astype(np.float64) ** prior_power
    prior /= prior.sum()
    categories_per_image = table.image_count.sum() / NUM_TRAIN_IMAGES
    instances_per_image = np.minimum(table.instance_count / table.image_count, MAX_INSTANCES_PER_CATEGORY)
    images, annotations = [], []
    for index in range(num_images):
        height, width = IMAGE_SIZES[rng.randint(len(IMAGE_SIZES))]
        image_id = first_image_id + 3 * index + int(rng.randint(3))  # sparse, increasing ids, as COCO's
        k = min(1 + rng.poisson(categories_per_image - 1), 30)
        present = rng.choice(num_classes, size=k, replace=False, p=prior)
        absent_pool = np.setdiff1d(np.arange(num_classes), present)
        num_negative = min(rng.poisson(MEAN_NEGATIVE_CATEGORIES), absent_pool.size)
        negative = rng.choice(absent_pool, size=num_negative, replace=False,
                              p=prior[absent_pool] / prior[absent_pool].sum())
        not_exhaustive = ([int(present[rng.randint(k)]) + 1] if rng.rand() < NOT_EXHAUSTIVE_PROBABILITY else [])
        polygons, owners = [], []
        for c in present:
            for _ in range(1 + rng.poisson(instances_per_image[c] - 1)):
                size = np.exp(rng.uniform(np.log(6), np.log(0.7 * min(height, width))))
                aspect = np.exp(rng.uniform(-0.7, 0.7))
                rx, ry = size * aspect / 2, size / aspect / 2
                cx, cy = rng.uniform(0, width), rng.uniform(0, height)
                polygons.append(_clip_flat(_star_polygon(rng, cx, cy, rx, ry, rng.randint(6, 13)), height, width))
                owners.append(int(c) + 1)
        rles = mask_util.frPyObjects(polygons, height, width)
        areas, boxes = mask_util.area(rles), mask_util.toBbox(rles)
        for polygon, category_id, area, box in zip(polygons, owners, areas, boxes):
            if area < 1:  # clipped away entirely: LVIS has no empty masks
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "segmentation": [polygon], "area": float(area),
                                "bbox": [float(v) for v in box]})
        images.append({"id": image_id, "height": height, "width": width,
                       "file_name": f"{image_id:012d}.jpg",
                       "coco_url": f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg",
                       "neg_category_ids": sorted(int(c) + 1 for c in negative),
                       "not_exhaustive_category_ids": not_exhaustive})
    return {"info": {"description": f"generated LVIS v1-sized evaluation case, {num_images} images, seed {seed}"},
            "licenses": [], "images": images, "annotations": annotations, "categories": categories}


def _f32(values):
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _encode(polygons, height, width):
    rles = mask_util.frPyObjects(polygons, height, width) if polygons else []
    return [{"size": [height, width], "counts": rle["counts"].decode("ascii")} for rle in rles]


def generated_detections(ground_truth: Dict, per_image: int = 300, seed: int = 1) -> List[List[Dict]]:
    """``per_image`` detections for every image of ``ground_truth``, one list per image in its order."""
    rng = np.random.RandomState(seed)
    category_ids = np.asarray([c["id"] for c in ground_truth["categories"]])
    counts = np.asarray([max(int(c.get("image_count", 1)), 1) for c in ground_truth["categories"]], np.float64)
    prior = counts / counts.sum()
    by_image: Dict[int, list] = {}
    for ann in ground_truth["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    result = []
    for image in ground_truth["images"]:
        height, width, image_id = image["height"], image["width"], image["id"]
        anns = by_image.get(image["id"], [])
        labelled = sorted({a["category_id"] for a in anns} | set(image.get("neg_category_ids", [])))
        boxes, polygons, categories, scores = [], [], [], []
        for ann in anns:
            points = np.asarray(ann["segmentation"][0], dtype=np.float64).reshape(-1, 2)
            x, y, w, h = ann["bbox"]
            for _ in range(rng.randint(1, 4)):
                if len(boxes) >= per_image:
                    break
                sigma = rng.uniform(0.0, 0.35)
                scale = np.exp(rng.normal(0, sigma, size=2))
                shift = rng.normal(0, sigma, size=2) * (w, h)
                centre = np.asarray([x + w / 2, y + h / 2])
                moved = (points - centre) * scale + centre + shift
                x0, y0 = moved.min(axis=0)
                x1, y1 = moved.max(axis=0)
                x0, x1 = np.clip([x0, x1], 0, width)
                y0, y1 = np.clip([y0, y1], 0, height)
                boxes.append([x0, y0, x1 - x0, y1 - y0])
                polygons.append(_clip_flat(moved, height, width))
                confused = rng.rand() < 0.2 and labelled
                categories.append(int(rng.choice(labelled)) if confused else ann["category_id"])
                scores.append(1 / (1 + np.exp(-rng.normal(2.0 - 8 * sigma, 1.2))))
        num_random = per_image - len(boxes)
        sizes = np.exp(rng.uniform(np.log(4), np.log(0.8 * min(height, width)), num_random))
        aspects = np.exp(rng.uniform(-0.8, 0.8, num_random))
        centres = rng.uniform(0, 1, (num_random, 2)) * (width, height)
        from_labelled = rng.rand(num_random) < (0.4 if labelled else 0.0)
        anywhere = category_ids[np.searchsorted(np.cumsum(prior), rng.rand(num_random) * prior.sum())
                                .clip(0, len(prior) - 1)]
        degenerate = rng.rand(num_random) < DEGENERATE_FRACTION
        random_scores = rng.beta(1, 8, num_random)
        random_scores = np.where(rng.rand(num_random) < 0.5, np.round(random_scores, 3), random_scores)
        for j in range(num_random):
            rx, ry = sizes[j] * aspects[j] / 2, sizes[j] / aspects[j] / 2
            ellipse = _star_polygon(rng, centres[j, 0], centres[j, 1], rx, ry, 12)
            if degenerate[j]:  # a zero-width box with an empty mask
                ellipse[:, 0] = ellipse[0, 0]
            x0, y0 = np.clip(ellipse.min(axis=0), 0, (width, height))
            x1, y1 = np.clip(ellipse.max(axis=0), 0, (width, height))
            boxes.append([x0, y0, x1 - x0, y1 - y0])
            polygons.append(_clip_flat(ellipse, height, width))
            categories.append(int(labelled[rng.randint(len(labelled))]) if from_labelled[j] else int(anywhere[j]))
            scores.append(random_scores[j])
        boxes = _f32(boxes).tolist()
        scores = _f32(scores).tolist()
        masks = _encode(polygons, height, width)
        result.append([{"image_id": image_id, "category_id": c, "bbox": b, "score": s, "segmentation": m}
                       for c, b, s, m in zip(categories, boxes, scores, masks)])
    return result
