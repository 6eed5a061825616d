"""metrics.jsonl parsing, the figures, the self-contained report and the whole pipeline on synthetic runs."""
import base64
import json
import os
import re

import numpy as np
import pytest

from lda_analysis import RunData, eval_curve, read_metrics, training_curve
from lda_analysis.pipeline import analyze_runs
from lda_analysis.report import Section, Table, render_html


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_text_table_aligns_columns_and_right_aligns_numbers():
    from lda_analysis.report import text_table

    table = Table(["run", "method", "top-1 %", "few %"],
                  [["digits_lda", "lda", 96.0, None], ["digits_ce", "ce", np.float64(94.2), 84.123456]])
    assert text_table(table).splitlines() == [
        "run         method  top-1 %  few %",
        "----------  ------  -------  -----",
        "digits_lda  lda          96      -",
        "digits_ce   ce         94.2  84.12",
    ]


def test_read_metrics_names_file_and_line_of_a_bad_record(tmp_path):
    good = _write_lines(tmp_path / "metrics.jsonl", ['{"type": "train", "epoch": 0}', "", '{"type": "eval"}'])
    assert [r["type"] for r in read_metrics(good)] == ["train", "eval"]
    bad = _write_lines(tmp_path / "bad.jsonl", ['{"type": "train"}', '{"type": '])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        read_metrics(bad)
    not_object = _write_lines(tmp_path / "list.jsonl", ["[1, 2]"])
    with pytest.raises(ValueError, match=r"list\.jsonl:1: expected a JSON object"):
        read_metrics(not_object)


def test_training_curve_places_steps_at_fractional_epochs_and_drops_re_logged_steps():
    # lda_cls.train's convention: epochs count from 1, "iter" is the global step, 20 steps per epoch.
    records = [
        {"type": "train", "epoch": 1, "iter": 10, "alpha": 4.0, "delta_acc": 2.0},
        {"type": "train", "epoch": 1, "iter": 20, "alpha": 1.0, "delta_acc": 1.0},
        {"type": "eval", "epoch": 1, "split": "val", "balanced": {"top1": 30.0}, "unbalanced": {"top1": 40.0}},
        {"type": "train", "epoch": 2, "iter": 30, "alpha": 9.0, "delta_acc": 3.0},
        {"type": "train", "epoch": 2, "iter": 40, "alpha": 0.0, "delta_acc": -1.0},
        # A resume re-runs epoch 2 from its start: the second pass replaces the first.
        {"type": "train", "epoch": 2, "iter": 25, "alpha": 16.0, "delta_acc": 4.0},
        {"type": "train", "epoch": 2, "iter": 40, "alpha": 0.25, "delta_acc": 0.5},
        {"type": "eval", "epoch": 2, "split": "val", "balanced": {"top1": 50.0}, "unbalanced": {"top1": 45.0}},
    ]
    curve = training_curve(records)
    np.testing.assert_allclose(curve["epoch"], [0.5, 1.0, 1.25, 2.0])
    np.testing.assert_allclose(curve["alpha"], [4.0, 1.0, 16.0, 0.25])
    np.testing.assert_allclose(curve["delta_acc"], [2.0, 1.0, 4.0, 0.5])
    assert np.isnan(curve["lr"]).all()
    evaluations = eval_curve(records, split="val")
    np.testing.assert_allclose(evaluations["balanced"], [30.0, 50.0])
    np.testing.assert_allclose(evaluations["unbalanced"], [40.0, 45.0])
    assert eval_curve(records, split="test")["epoch"].size == 0


def test_training_curve_of_a_running_job_uses_its_finished_epochs():
    # 96 iterations per epoch; epoch 3 is still running (its last record is not its last step).
    records = [{"type": "train", "epoch": e, "iter": i, "alpha": 1.0}
               for e, i in ((1, 48), (1, 96), (2, 144), (2, 192), (3, 200))]
    np.testing.assert_allclose(training_curve(records)["epoch"], [0.5, 1.0, 1.5, 2.0, 200 / 96])


def test_training_curve_without_iterations_spreads_steps_over_each_epoch():
    records = [{"type": "train", "epoch": e, "alpha": 1.0} for e in (1, 1, 1, 1, 2, 2)]
    np.testing.assert_allclose(training_curve(records)["epoch"], [0.25, 0.5, 0.75, 1.0, 1.5, 2.0])


def test_report_is_self_contained_with_inline_png_and_escaped_numbers(tmp_path):
    png = tmp_path / "figure.png"
    png_bytes = b"\x89PNG\r\n\x1a\n" + b"payload"
    png.write_bytes(png_bytes)
    table = Table(["class", "value"], [["<cat>", 0.123456789], ["dog", float("nan")]])
    page = render_html("Title & more", [Section("A figure", str(png), "caption", table)], Table(["run"], [["x"]]))
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    assert base64.b64decode(sources[0].split(",", 1)[1]) == png_bytes
    assert "://" not in page and "<link" not in page and "<script" not in page
    assert "&lt;cat&gt;" in page and "0.1235" in page and "Title &amp; more" in page
    with pytest.raises(ValueError, match="row 0 has 1 values for 2 columns"):
        Table(["a", "b"], [[1]])


def _synthetic_run(name, method, head_bias, seed):
    """Ten classes with CIFAR-10-LT-like counts; predictions favour head classes by ``head_bias``."""
    rng = np.random.default_rng(seed)
    counts = np.floor(500 * 0.02 ** (np.arange(10) / 9)).astype(int)  # 500 ... 10: all three splits
    means = rng.normal(size=(10, 8)) * 2
    test_targets = np.repeat(np.arange(10), 20)
    test_features = means[test_targets] + rng.normal(size=(200, 8))
    logits = test_features @ means.T + head_bias * np.log(counts)[None]
    train_targets = np.repeat(np.arange(10), np.minimum(counts, 30))
    train_features = means[train_targets] + rng.normal(size=(len(train_targets), 8))
    classifiers = {"h": means * (1 + head_bias * np.log(counts))[:, None]}
    records = [{"type": "train", "epoch": e + 1, "iter": 4 * e + i + 1} for e in range(3) for i in range(4)]
    unbalanced = None
    if method == "lda":
        classifiers["h'"] = means * (1 + 0.5 * np.log(counts))[:, None]
        unbalanced = (logits + 3 * np.log(counts)[None]).argmax(1)
        for position, record in enumerate(records):
            record.update(alpha=float(max(0, 6 - position)) ** 2, delta_acc=float(6 - position),
                          balanced_coefficient=0.01 * float(max(0, 6 - position)) ** 2)
    # One test evaluation per epoch, top-1 rising: the diagnosis figure's lower panel.
    records += [{"type": "eval", "epoch": e, "split": "test", "balanced": {"top1": 40.0 + 10 * e + head_bias}}
                for e in (1, 2, 3)]
    return RunData(name=name, method=method, class_counts=counts, class_names=[f"class{i}" for i in range(10)],
                   classifiers=classifiers, test_targets=test_targets, test_predictions=logits.argmax(1),
                   test_features=test_features, train_targets=train_targets, train_features=train_features,
                   test_unbalanced_predictions=unbalanced, records=records)


def test_analyze_runs_writes_every_figure_the_report_and_consistent_numbers(tmp_path):
    lda, ce = _synthetic_run("lda", "lda", 0.2, seed=0), _synthetic_run("ce", "ce", 4.0, seed=0)
    # Hand-made tail-to-head confusion: half the test images of each few-shot class (8, 9) go to class 0
    # (many-shot) in CE, and to class 7 (medium-shot) in LDA.
    for run, wrong_class in ((ce, 0), (lda, 7)):
        run.test_predictions = np.where(run.test_targets >= 8, run.test_targets, run.test_predictions)
        for few_class in (8, 9):
            run.test_predictions[np.flatnonzero(run.test_targets == few_class)[:10]] = wrong_class
    out = analyze_runs([lda, ce], str(tmp_path / "analysis"), cdd_max_per_class=15)
    assert len(out["figures"]) == 8
    for path in out["figures"]:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 10_000  # a drawn figure, not an empty canvas
    page = open(out["report"], encoding="utf-8").read()
    assert page.count("data:image/png;base64,") == 8 and "://" not in page  # base64 has no ":"

    numbers = json.load(open(out["json"]))
    diagnosis = {(row["run"], row["epoch"]): row for row in numbers["figures"]["balance_vs_accuracy.png"]}
    assert set(diagnosis) == {(run, e) for run in ("lda", "ce") for e in (1.0, 2.0, 3.0)}
    # LDA's coefficient at the end of epoch 2 (its 8th logged step, position 7: alpha 0) and epoch 1 (position 3: 9).
    assert diagnosis["lda", 1.0]["coefficient (end of epoch)"] == pytest.approx(0.09)
    assert diagnosis["lda", 2.0]["coefficient (end of epoch)"] == pytest.approx(0.0)
    assert diagnosis["ce", 1.0]["coefficient (end of epoch)"] is None  # CE logs none (NaN -> null)
    assert diagnosis["lda", 3.0]["test top-1 of h %"] == pytest.approx(70.2)
    summary = {row["run"]: row for row in numbers["summary"]}
    for run in (lda, ce):
        expected = 100 * np.mean([(run.test_predictions[run.test_targets == c] == c).mean() for c in range(10)])
        assert summary[run.name]["top-1 %"] == pytest.approx(expected)
    assert summary["ce"]["few errors -> many %"] == pytest.approx(100.0)
    assert summary["lda"]["few errors -> many %"] == pytest.approx(0.0)
    flow_rows = {(row["run"], row["true split"]): row for row in numbers["figures"]["tail_to_head_confusion.png"]}
    assert flow_rows["lda: h (balanced)", "few"]["% to medium"] == pytest.approx(100.0)
    assert flow_rows["ce: CE classifier", "few"]["errors"] == 20
    norms = numbers["quantities"]["weight_norms"]
    assert set(norms) == {"lda: h (balanced)", "lda: h' (unbalanced)", "ce: CE classifier"}
    np.testing.assert_allclose(norms["ce: CE classifier"], np.linalg.norm(ce.classifiers["h"], axis=1))
    curve_rows = numbers["figures"]["alpha_delta_acc.png"]
    assert {row["run"] for row in curve_rows} == {"lda"}  # CE logs no alpha
    assert curve_rows[0]["alpha"] == pytest.approx(36.0)


def test_runs_with_different_training_sets_are_refused(tmp_path):
    lda = _synthetic_run("lda", "lda", 0.2, seed=0)
    other = _synthetic_run("other", "ce", 0.2, seed=1)
    other.class_counts = other.class_counts + 1
    with pytest.raises(ValueError, match="run other was trained on different class counts than lda"):
        analyze_runs([lda, other], str(tmp_path / "x"), tsne=False)


def test_run_data_cache_round_trips(tmp_path):
    run = _synthetic_run("lda", "lda", 0.2, seed=0)
    run.save(str(tmp_path / "run.npz"))
    loaded = RunData.load(str(tmp_path / "run.npz"), records=run.records)
    assert loaded.name == "lda" and loaded.method == "lda" and loaded.class_names == run.class_names
    np.testing.assert_array_equal(loaded.classifiers["h'"], run.classifiers["h'"])
    np.testing.assert_array_equal(loaded.test_unbalanced_predictions, run.test_unbalanced_predictions)
    assert loaded.records == run.records


def test_per_class_figure_with_many_classes_uses_lvis_splits(tmp_path):
    from lda_analysis.figures import plot_per_class_metric, plot_weight_norms
    from lda_analysis.metrics import split_means
    from lda_analysis.splits import LVIS_SPLITS

    rng = np.random.default_rng(0)
    counts = np.concatenate([rng.integers(1, 11, 50), rng.integers(11, 101, 60), rng.integers(101, 5000, 40)])
    ap = np.where(counts > 100, 30.0, np.where(counts > 10, 20.0, 10.0))
    ap[0] = np.nan  # a category absent from the evaluation
    means = {"run": split_means(ap, counts, LVIS_SPLITS)}
    assert (means["run"]["many"], means["run"]["medium"], means["run"]["few"]) == (30.0, 20.0, 10.0)
    names = [f"c{i}" for i in range(150)]
    table = plot_per_class_metric({"run": ap}, means, counts, names, str(tmp_path / "ap.png"), ylabel="AP (%)",
                                  title="AP", column="AP %", rule=LVIS_SPLITS)
    assert len(table.rows) == 150 + 4 and table.rows[0][2] == counts.max()
    assert {row[3] for row in table.rows[:150]} == {"many", "medium", "few"}
    plot_weight_norms({"run": rng.random(150)}, counts, names, str(tmp_path / "norms.png"), LVIS_SPLITS)
    for name in ("ap.png", "norms.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
