"""benchmarks/bench_lvis_eval.py: its table is what the committed result files say, and the pages show it."""
import json
import os

import pytest

from ..helpers import REPO, load_script

BENCH = load_script("benchmarks/bench_lvis_eval.py", "bench_lvis_eval")
RESULTS = os.path.join(REPO, "benchmarks", "results", "lvis_eval")


def _record(evaluator, n, wall_s, peak_rss_mb, ap):
    metrics = {m: ap for m in BENCH.METRICS}
    return {"evaluator": evaluator, "n": n, "wall_s": wall_s, "peak_rss_mb": peak_rss_mb,
            "results": {"bbox": metrics, "segm": metrics},
            "case": {"detections": 300 * n, "gather_bytes": 1000 * n, "shard_bytes": 2000 * n}}


def test_the_table_fits_a_plus_b_n_and_extrapolates_to_lvis_val(tmp_path):
    for n, (d2_s, d2_mb, ours_s, ours_mb) in {100: (10.0, 300.0, 2.0, 110.0), 200: (20.0, 500.0, 3.0, 120.0)}.items():
        for record in (_record("detectron2", n, d2_s, d2_mb, 25.0), _record("sharded", n, ours_s, ours_mb, 25.0 + 1e-9)):
            (tmp_path / f"{record['evaluator']}_n{n}.json").write_text(json.dumps(record))
    text = BENCH.table(BENCH.load_records(str(tmp_path)))
    # detectron2: 100 + 2 N MB and 0.1 N s; sharded: 100 + 0.1 N MB and 1 + 0.01 N s, at N = 19,809.
    assert "| detectron2 | peak RSS | 100 MB | 2.000 MB | 39,718 MB |" in text
    assert "| detectron2 | wall time | 0 s | 0.100 s | 1,981 s |" in text
    assert "| sharded | peak RSS | 100 MB | 0.100 MB | 2,081 MB |" in text
    assert "| sharded | wall time | 1 s | 0.010 s | 199 s |" in text
    assert "| 200 | 60,000 | detectron2 | 20.0 | 500 | 0 MB |  | 1.0e-09 |" in text


@pytest.mark.parametrize("page", ["projects/LDA/README.md", "docs/lvis_evaluation.md"])
def test_the_pages_show_the_committed_results(page):
    table = BENCH.table(BENCH.load_records(RESULTS))
    with open(os.path.join(REPO, page)) as f:
        assert table in f.read(), f"{page}: the evaluation table differs from python benchmarks/bench_lvis_eval.py --table"


def test_a_tiny_benchmark_writes_one_result_per_evaluator_and_skips_them_on_a_rerun(tmp_path):
    import subprocess
    import sys

    results = tmp_path / "results"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "bench_lvis_eval.py"), "--sizes", "20", "--per-image",
               "50", "--ranks", "2", "--work-dir", str(tmp_path / "work"), "--results-dir", str(results)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    records = BENCH.load_records(str(results))["20"]
    assert set(records) == {"case", "detectron2", "sharded"}
    for task in ("bbox", "segm"):
        for metric in BENCH.METRICS:
            assert abs(records["sharded"]["results"][task][metric] - records["detectron2"]["results"][task][metric]) < 1e-4
    assert records["sharded"]["peak_rss_mb"] > 0 and records["case"]["detections"] == 1000
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "N = 20" not in again.stdout  # both files there: nothing re-measured
