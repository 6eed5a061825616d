import os

import numpy as np
import pytest
import torch

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
    (root / "train" / "n01" / "img_001.png").unlink()
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
