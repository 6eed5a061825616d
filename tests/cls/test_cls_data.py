import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from lda_cls import BatchPreprocess, build_dataset, build_datasets, get_cfg
from lda_cls.data import long_tail_counts, parse_split_file, shot_groups, subsample_long_tail
from lda_cls.stats import class_statistics, main as stats_main



def make_cfg(**updates):
    cfg = get_cfg()
    for key, value in updates.items():
        node = cfg
        *path, leaf = key.split(".")
        for part in path:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return cfg


def test_profile_matches_published_cifar_lt_sizes():
    # CIFAR-10-LT IR 100 is the 12,406-image set of the LDAM/BBN/LDA papers; CIFAR-100-LT IR 100 has 10,847.
    assert long_tail_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(long_tail_counts(5000, 10, 100)) == 12406
    assert sum(long_tail_counts(500, 100, 100)) == 10847
    assert sum(long_tail_counts(5000, 10, 10)) == 20431
    assert long_tail_counts(7, 1, 100) == [7]
    with pytest.raises(ValueError, match="imbalance ratio"):
        long_tail_counts(10, 3, 0.5)


def test_subsample_is_seeded_and_checks_availability():
    targets = np.repeat(np.arange(3), 10)
    first = subsample_long_tail(targets, 3, 4.0, seed=1)
    assert np.bincount(targets[first]).tolist() == [10, 5, 2]
    assert np.array_equal(first, subsample_long_tail(targets, 3, 4.0, seed=1))
    assert not np.array_equal(first, subsample_long_tail(targets, 3, 4.0, seed=2))
    with pytest.raises(ValueError, match="class 1 has 3 images"):
        subsample_long_tail(np.array([0] * 10 + [1] * 3 + [2] * 10), 3, 2.0)


def test_shot_groups_boundaries():
    # many: > 100, medium: 20..100, few: < 20
    assert shot_groups([101, 100, 20, 19, 0]).tolist() == [0, 1, 1, 2, 2]


def test_cifar_from_image_folder_follows_profile_and_caches(image_tree, tmp_path):
    cfg = make_cfg(**{"DATASET.NAME": "cifar10_lt", "DATASET.ROOT": str(image_tree),
                      "DATASET.IMBALANCE_RATIO": 10.0, "DATASET.CACHE_DIR": str(tmp_path / "cache")})
    train, test, counts = build_datasets(cfg)
    assert counts == long_tail_counts(20, 10, 10) == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    assert len(test) == 30 and np.bincount(test.targets).tolist() == [3] * 10
    image, label = train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 8, 8) and label == 0
    # The red channel encodes the class (see conftest): images are paired with the right labels.
    assert all(int(train[i][0][0, 0, 0]) == 20 * train[i][1] for i in range(len(train)))
    assert len(os.listdir(tmp_path / "cache")) == 2
    again, _ = build_dataset(cfg, "train")  # served from the cache
    assert torch.equal(again.images, train.images)
    # CIFAR has no validation split: "val" is None, never the test split in disguise.
    assert build_dataset(cfg, "val") == (None, 10)


def test_cifar_errors_name_the_problem(tmp_path, image_tree):
    cfg = make_cfg(**{"DATASET.NAME": "cifar10_lt", "DATASET.ROOT": str(tmp_path / "nowhere"),
                      "DATASET.DOWNLOAD": False})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset(cfg, "train")
    cfg = make_cfg(**{"DATASET.NAME": "cifar100_lt", "DATASET.ROOT": str(image_tree)})
    with pytest.raises(ValueError, match="10 class folders, expected 100"):
        build_dataset(cfg, "train")
    cfg = make_cfg(**{"DATASET.NAME": "cifar10_lt", "DATASET.ROOT": str(image_tree), "DATASET.IMBALANCE_RATIO": 10.0})
    bad = image_tree / "train" / "class03" / "img_000.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(RuntimeError, match="cannot read image .*img_000.png"):
        build_dataset(cfg, "train")


def test_digits_lt_profile_and_balanced_test_set():
    cfg = get_cfg()
    train, test, counts = build_datasets(cfg)
    # n_max is the smallest per-class pool after holding out 50 test and 20 validation images per class
    # (class 8 has 174: 174 - 50 - 20).
    assert counts == long_tail_counts(104, 10, 10)
    assert np.bincount(test.targets).tolist() == [50] * 10
    assert train.images.shape == (sum(counts), 1, 8, 8) and train.images.dtype == torch.uint8
    assert int(train.images.max()) == 255


def test_digits_lt_validation_split_is_balanced_and_disjoint():
    cfg = get_cfg()
    train, test, _ = build_datasets(cfg)
    val, num_classes = build_dataset(cfg, "val")
    assert num_classes == 10 and np.bincount(val.targets).tolist() == [20] * 10
    # Every digits image is distinct, so disjoint pixel contents mean disjoint images.
    keys = [{image.numpy().tobytes() for image in part.images} for part in (train, val, test)]
    assert [len(k) for k in keys] == [len(train), 200, 500]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    # The test set does not depend on the validation size; without validation images there is no split.
    cfg.DATASET.DIGITS_VAL_PER_CLASS = 0
    assert torch.equal(build_dataset(cfg, "test")[0].images, test.images)
    assert build_dataset(cfg, "val") == (None, 10)


def test_imagefolder_lt_as_is_and_subsampled(tmp_path, write_image_tree):
    root = tmp_path / "mine"
    write_image_tree(str(root / "train"), [12, 7, 3], prefix="c")
    write_image_tree(str(root / "test"), [2, 2, 2], prefix="c")
    cfg = make_cfg(**{"DATASET.NAME": "imagefolder_lt", "DATASET.ROOT": str(root), "DATASET.IMBALANCE_RATIO": 1.0,
                      "INPUT.SIZE": 8, "INPUT.TEST_RESIZE": 8})
    train, test, counts = build_datasets(cfg)
    assert counts == [12, 7, 3]
    image, label = test[0]
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8
    cfg.DATASET.IMBALANCE_RATIO = 4.0
    assert build_datasets(cfg)[2] == [12, 6, 3]
    # val/ is optional: without it there is no validation split; with it, it is read as is.
    assert build_dataset(cfg, "val") == (None, 3)
    write_image_tree(str(root / "val"), [1, 2, 1], prefix="c")
    val, _ = build_dataset(cfg, "val")
    assert val.targets == [0, 1, 1, 2] and val[0][0].shape == (3, 8, 8)
    write_image_tree(str(root / "test"), [1], prefix="extra")
    with pytest.raises(ValueError, match="differ from those of the training split"):
        build_dataset(cfg, "test")


def write_split(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_split_file_parsing_and_errors(tmp_path):
    good = write_split(tmp_path / "good.txt", ["a/x.png 0", "", "b/y.png 2"])
    assert parse_split_file(good, 3) == [("a/x.png", 0), ("b/y.png", 2)]
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        parse_split_file(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'relative/path label'"):
        parse_split_file(write_split(tmp_path / "bad.txt", ["a.png 0", "b.png 1 extra"]))
    with pytest.raises(ValueError, match=r"word.txt:1: label 'one' is not an integer"):
        parse_split_file(write_split(tmp_path / "word.txt", ["a.png one"]))
    with pytest.raises(ValueError, match=r"range.txt:2: label 5 outside \[0, 5\)"):
        parse_split_file(write_split(tmp_path / "range.txt", ["a.png 4", "b.png 5"]), 5)
    with pytest.raises(ValueError, match=r"neg.txt:1: label -1 outside"):
        parse_split_file(write_split(tmp_path / "neg.txt", ["a.png -1"]), 5)
    with pytest.raises(ValueError, match="lists no images"):
        parse_split_file(write_split(tmp_path / "empty.txt", [""]))


def test_imagenet_lt_from_split_files(tmp_path, write_image_tree):
    root = tmp_path / "imagenet"
    write_image_tree(str(root / "train"), [4, 2], prefix="n")
    lines = [f"train/n{label:02d}/img_{i:03d}.png {label}" for label, n in enumerate([4, 2]) for i in range(n)]
    train_file = write_split(tmp_path / "ImageNet_LT_train.txt", lines)
    test_file = write_split(tmp_path / "ImageNet_LT_test.txt", lines[:1] + lines[-1:])
    val_file = write_split(tmp_path / "ImageNet_LT_val.txt", lines[:2])
    cfg = make_cfg(**{"DATASET.NAME": "imagenet_lt", "DATASET.ROOT": str(root), "DATASET.NUM_CLASSES": 2,
                      "DATASET.TRAIN_SPLIT_FILE": train_file, "DATASET.VAL_SPLIT_FILE": val_file,
                      "DATASET.TEST_SPLIT_FILE": test_file, "INPUT.SIZE": 8, "INPUT.TEST_RESIZE": 8})
    train, test, counts = build_datasets(cfg)
    assert counts == [4, 2] and test.targets == [0, 1]
    assert len(build_dataset(cfg, "val")[0]) == 2
    image, label = test[1]
    assert image.shape == (3, 8, 8) and label == 1
    # Errors name the root, the image and the label.
    cfg.DATASET.ROOT = str(tmp_path / "no_root")
    with pytest.raises(FileNotFoundError, match="no_root"):
        build_dataset(cfg, "train")
    # Label statistics (lda_cls.stats) need the split file only.
    assert build_dataset(cfg, "train", load_images=False)[0].targets == [0, 0, 0, 0, 1, 1]
    cfg.DATASET.ROOT = str(root)
    (root / "train" / "n01" / "img_001.png").write_bytes(b"not a png")
    with pytest.raises(RuntimeError, match="cannot read image .*n01/img_001.png"):
        build_dataset(cfg, "train")[0][5]
    cfg.DATASET.NUM_CLASSES = 1
    with pytest.raises(ValueError, match=r"ImageNet_LT_train.txt:5: label 1 outside \[0, 1\)"):
        build_dataset(cfg, "train")
    cfg.DATASET.TEST_SPLIT_FILE = ""
    with pytest.raises(ValueError, match="split file path is empty"):
        build_dataset(cfg, "test")


def test_stats_counts_without_images_and_plot(tmp_path, image_tree, capsys):
    stats = class_statistics([150, 100, 20, 19, 1])
    assert stats["imbalance_ratio"] == 150.0
    assert stats["classes_per_split"] == {"many": 1, "medium": 2, "few": 2}
    assert stats["images_per_split"] == {"many": 150, "medium": 120, "few": 20}
    plot = tmp_path / "hist.png"
    result = stats_main(["--dataset", "cifar10_lt", "--data-root", str(image_tree), "--plot", str(plot),
                         "DATASET.IMBALANCE_RATIO", "10"])
    assert result["num_images"] == sum(long_tail_counts(20, 10, 10)) and result["max_per_class"] == 20
    assert plot.stat().st_size > 1000
    assert "imbalance ratio 10.00" in capsys.readouterr().out


def test_batch_preprocess_normalises_crops_and_flips():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8)
    plain = BatchPreprocess([0.5, 0.25, 0.0], [0.5, 0.5, 1.0])(images)
    expected = (images.float() / 255 - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) \
        / torch.tensor([0.5, 0.5, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(plain, expected, atol=1e-5)
    augmented = BatchPreprocess([0.0] * 3, [1 / 255] * 3, pad_crop=2, flip=True)(images)
    padded = torch.nn.functional.pad(images.float(), (2, 2, 2, 2))
    for sample, out in zip(padded, augmented):
        windows = [sample[:, y:y + 5, x:x + 5] for y in range(5) for x in range(5)]
        windows += [w.flip(2) for w in windows]
        assert any(torch.equal(out, w) for w in windows)
    with pytest.raises(ValueError, match="channels"):
        BatchPreprocess([0.5], [0.5])(images)


def test_missing_listed_images_stop_the_build_before_training(tmp_path, write_image_tree):
    root = tmp_path / "imagenet"
    write_image_tree(str(root / "train"), [4, 3], prefix="n")
    lines = [f"train/n{label:02d}/img_{i:03d}.png {label}" for label, n in enumerate([4, 3]) for i in range(n)]
    split = {name: write_split(tmp_path / f"ImageNet_LT_{name}.txt", lines) for name in ("train", "val", "test")}
    cfg = make_cfg(**{"DATASET.NAME": "imagenet_lt", "DATASET.ROOT": str(root), "DATASET.NUM_CLASSES": 2,
                      "DATASET.TRAIN_SPLIT_FILE": split["train"], "DATASET.VAL_SPLIT_FILE": split["val"],
                      "DATASET.TEST_SPLIT_FILE": split["test"], "INPUT.SIZE": 8, "INPUT.TEST_RESIZE": 8})
    assert len(build_dataset(cfg, "test")[0]) == 7
    (root / "train" / "n00" / "img_002.png").unlink()
    (root / "train" / "n01" / "img_000.png").unlink()
    for name in ("train", "val", "test"):  # every split, at build time, before any image is decoded
        with pytest.raises(FileNotFoundError, match=rf"2 of the 7 images listed by imagenet_lt {name} split "
                                                    rf".*ImageNet_LT_{name}.txt are missing under .*: "
                                                    r".*n00/img_002.png, .*n01/img_000.png$"):
            build_dataset(cfg, name)
    # A directory is not an image, and a whole missing folder counts each of its images.
    (root / "train" / "n00" / "img_002.png").mkdir()
    shutil.rmtree(root / "train" / "n01")
    with pytest.raises(FileNotFoundError, match=r"4 of the 7 images .*img_002.png, .*n01/img_000.png, "
                                                r".*n01/img_001.png, .*n01/img_002.png$"):
        build_dataset(cfg, "train")
    # More than five: the first five, then the count of the rest.
    write_split(tmp_path / "long.txt", [f"train/n00/gone_{i}.png 0" for i in range(8)])
    cfg.DATASET.TRAIN_SPLIT_FILE = str(tmp_path / "long.txt")
    with pytest.raises(FileNotFoundError, match=r"8 of the 8 .*gone_4.png \(and 3 more\)$"):
        build_dataset(cfg, "train")
    # Label statistics still need the split file only.
    assert len(build_dataset(cfg, "train", load_images=False)[0]) == 8


def test_missing_files_lists_each_folder_once(tmp_path, monkeypatch):
    from lda_cls.data import file_check

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for i in range(50):
            (tmp_path / folder / f"{i}.jpg").write_bytes(b"")
    listed = []
    real_scandir = os.scandir
    monkeypatch.setattr(file_check.os, "scandir", lambda path: listed.append(path) or real_scandir(path))
    paths = [f"{folder}/{i}.jpg" for i in range(51) for folder in ("b", "a")]
    assert file_check.missing_files(str(tmp_path), paths) == ["b/50.jpg", "a/50.jpg"]
    assert sorted(os.path.basename(p) for p in listed) == ["a", "b"]


def test_empty_class_folder_is_an_error_naming_it(tmp_path, write_image_tree, image_tree):
    root = tmp_path / "mine"
    write_image_tree(str(root / "train"), [3, 2], prefix="c")
    write_image_tree(str(root / "test"), [1, 1], prefix="c")
    (root / "train" / "c02_empty").mkdir()
    (root / "train" / "c02_empty" / "notes.txt").write_text("no images here")
    cfg = make_cfg(**{"DATASET.NAME": "imagefolder_lt", "DATASET.ROOT": str(root), "INPUT.SIZE": 8,
                      "INPUT.TEST_RESIZE": 8})
    with pytest.raises(ValueError, match=r"class folder .*train/c02_empty has no images"):
        build_dataset(cfg, "train")
    with pytest.raises(ValueError, match=r"c02_empty has no images"):
        build_dataset(cfg, "train", load_images=False)  # lda_cls.stats too
    # The CIFAR image-folder trees go through the same scan.
    (image_tree / "test" / "class04").rename(image_tree / "test" / "class04_moved")
    (image_tree / "test" / "class04").mkdir()
    cfg = make_cfg(**{"DATASET.NAME": "cifar10_lt", "DATASET.ROOT": str(image_tree)})
    with pytest.raises(ValueError, match=r"test/class04 has no images"):
        build_dataset(cfg, "test")


def _write_places(root, relative_paths):
    """Tiny JPEGs whose red channel encodes the label: {relative path: label}."""
    for path, label in relative_paths.items():
        full = root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.zeros((8, 8, 3), dtype=np.uint8)
        pixels[..., 0] = 40 * (label + 1)
        Image.fromarray(pixels).save(full, quality=100)


# (path as the OLTR split files list it, release-layout path, label)
PLACES_IMAGES = [
    ("train/airfield/00000001.jpg", "train/a/airfield/00000001.jpg", 0),
    ("train/airfield/00000002.jpg", "train/a/airfield/00000002.jpg", 0),
    ("train/apartment_building-outdoor/00000003.jpg", "train/a/apartment_building/outdoor/00000003.jpg", 1),
    ("train/bazaar-indoor/00000004.jpg", "train/b/bazaar/indoor/00000004.jpg", 2),
    ("val/airfield/Places365_val_00000005.jpg", "val/Places365_val_00000005.jpg", 0),
    ("val/apartment_building-outdoor/Places365_val_00000006.jpg", "val/Places365_val_00000006.jpg", 1),
    ("val/bazaar-indoor/Places365_val_00000007.jpg", "val/Places365_val_00000007.jpg", 2),
]


@pytest.mark.parametrize("layout", ["listed", "release"])
def test_places_lt_reads_both_places365_layouts(tmp_path, layout):
    from lda_cls.data.places365 import places365_release_path

    root = tmp_path / layout
    column = 0 if layout == "listed" else 1
    _write_places(root, {entry[column]: entry[2] for entry in PLACES_IMAGES})
    train_lines = [f"{listed} {label}" for listed, _, label in PLACES_IMAGES[:4]]
    test_lines = [f"{listed} {label}" for listed, _, label in PLACES_IMAGES[4:]]
    cfg = make_cfg(**{"DATASET.NAME": "places_lt", "DATASET.ROOT": str(root), "DATASET.NUM_CLASSES": 3,
                      "DATASET.TRAIN_SPLIT_FILE": write_split(tmp_path / "Places_LT_train.txt", train_lines),
                      "DATASET.VAL_SPLIT_FILE": write_split(tmp_path / "Places_LT_val.txt", train_lines[1:3]),
                      "DATASET.TEST_SPLIT_FILE": write_split(tmp_path / "Places_LT_test.txt", test_lines),
                      "INPUT.SIZE": 8, "INPUT.TEST_RESIZE": 8})
    assert [places365_release_path(listed) for listed, _, _ in PLACES_IMAGES] == [e[1] for e in PLACES_IMAGES]
    for setting in ("auto", layout):
        cfg.DATASET.PLACES_LAYOUT = setting
        for split, expected in (("train", [0, 0, 1, 2]), ("val", [0, 1]), ("test", [0, 1, 2])):
            dataset, num_classes = build_dataset(cfg, split)
            assert num_classes == 3 and dataset.targets == expected
            # The right file is read for each line: the red channel encodes the label.
            assert [int(dataset[i][0][0].float().mean().round()) for i in range(len(dataset))] == \
                [40 * (label + 1) for label in expected]
    other = "release" if layout == "listed" else "listed"
    cfg.DATASET.PLACES_LAYOUT = other
    with pytest.raises(FileNotFoundError, match=rf"4 of the 4 images .*Places-365 layout '{other}'"):
        build_dataset(cfg, "train")
    cfg.DATASET.PLACES_LAYOUT, cfg.DATASET.ROOT = "auto", str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"neither Places-365 layout .*listed: .*train/airfield/00000001.jpg;"
                                                r" release: .*train/a/airfield/00000001.jpg"):
        build_dataset(cfg, "train")
    cfg.DATASET.PLACES_LAYOUT = "data_256"
    with pytest.raises(ValueError, match="DATASET.PLACES_LAYOUT"):
        build_dataset(cfg, "train")


def test_a_missing_test_image_stops_the_run_before_the_first_epoch(tmp_path, write_image_tree):
    from lda_cls.train import main as train_main

    root = tmp_path / "imagenet"
    write_image_tree(str(root / "train"), [6, 4], prefix="n")
    lines = [f"train/n{label:02d}/img_{i:03d}.png {label}" for label, n in enumerate([6, 4]) for i in range(n)]
    files = {name: write_split(tmp_path / f"{name}.txt", lines) for name in ("train", "val")}
    files["test"] = write_split(tmp_path / "test.txt", lines[:2] + ["val/n01/lost.png 1"])
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"1 of the 3 images listed by imagenet_lt test split .*test.txt "
                                                r"are missing under .*: .*val/n01/lost.png$"):
        train_main(["--dataset", "imagenet_lt", "--data-root", str(root), "--output-dir", str(out),
                    "DATASET.NUM_CLASSES", "2", "DATASET.TRAIN_SPLIT_FILE", files["train"],
                    "DATASET.VAL_SPLIT_FILE", files["val"], "DATASET.TEST_SPLIT_FILE", files["test"],
                    "DATASET.NUM_WORKERS", "0", "MODEL.BACKBONE", "resnet8_cifar", "INPUT.SIZE", "8",
                    "INPUT.TEST_RESIZE", "8", "SOLVER.BATCH_SIZE", "4", "SOLVER.EPOCHS", "1"])
    assert not (out / "metrics.jsonl").exists() and not (out / "last_checkpoint.pth").exists()
