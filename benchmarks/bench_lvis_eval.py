#!/usr/bin/env python
"""LVIS evaluation at growing size: detectron2's LVISEvaluator (lvis-api) vs lda_det's sharded evaluator.

    python benchmarks/bench_lvis_eval.py --sizes 500 1000 2000 --work-dir /tmp/bench_lvis_eval

For each N: a generated LVIS v1-format ground truth of N images with LVIS v1's 1,203 categories and their
frequency profile (lda_det/data/lvis_sized.py), and 300 detections per image with compressed-RLE masks,
split over --ranks simulated ranks in contiguous parts, as detectron2's InferenceSampler splits them. Then, each in a fresh subprocess (wall time and peak
resident memory of that process, VmHWM, imports included):

* detectron2: LVISEvaluator(distributed=False) given the gathered predictions (unpickled from a file, as
  rank 0 unpickles comm.gather's bytes; the gather's own byte buffers are not counted), evaluate():
  bbox and segm with lvis-api, plus its instances_predictions.pth and lvis_instances_results.json;
* sharded: ShardedLVISEvaluator.evaluate_from_shards() on the shards the ranks wrote (what rank 0 runs
  after inference): reading the shards, the results json, bbox and segm with faster-coco-eval.

Bytes between ranks: the pickled size of every rank's prediction list (what comm.gather moves to rank 0)
vs the shard files written (to OUTPUT_DIR; only their counts are gathered). The metrics of the two are
compared too. Then time and memory are fitted as a + b N over the sizes measured and extrapolated to LVIS
v1 val (19,809 images). Results: benchmarks/results/lvis_eval/<evaluator>_n<N>.json (with the commit; a
file already there is skipped), and a markdown table on stdout (--table prints it from those files alone).
"""
import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "projects", "LDA")]

LVIS_V1_VAL_IMAGES = 19809
DATASET = "bench_lvis_sized"
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


def _case_dir(work_dir, n):
    return os.path.join(work_dir, f"n{n}")


def prepare(work_dir: str, n: int, per_image: int, ranks: int) -> dict:
    """Ground truth, the ranks' pickled prediction lists and their shards, written once per size."""
    from lda_det.data.lvis_sized import generated_detections, lvis_sized_ground_truth
    from lda_det.evaluation import ShardWriter, shard_directory, shard_name, write_manifest

    case = _case_dir(work_dir, n)
    info_file = os.path.join(case, "case.json")
    if os.path.isfile(info_file):
        with open(info_file) as f:
            return json.load(f)
    os.makedirs(case, exist_ok=True)
    start = time.perf_counter()
    gt = lvis_sized_ground_truth(n, seed=0)
    detections = generated_detections(gt, per_image=per_image, seed=1)
    json_file = os.path.join(case, "gt.json")
    with open(json_file, "w") as f:
        json.dump(gt, f)
    generation_s = time.perf_counter() - start
    pairs = list(zip(gt["images"], detections))
    gather_bytes, pickle_s, shard_s = 0, 0.0, 0.0
    rank_lists = []
    shard_dir = shard_directory(os.path.join(case, "sharded"), DATASET)
    os.makedirs(shard_dir, exist_ok=True)
    summaries = []
    sizes = [len(pairs) // ranks + int(rank < len(pairs) % ranks) for rank in range(ranks)]  # InferenceSampler
    for rank in range(ranks):
        mine = pairs[sum(sizes[:rank]):sum(sizes[:rank + 1])]
        # What LVISEvaluator.process keeps per image: contiguous (0-based) category ids.
        predictions = [{"image_id": image["id"], "instances": [dict(d, category_id=d["category_id"] - 1)
                                                                for d in image_detections]}
                       for image, image_detections in mine]
        t = time.perf_counter()
        data = pickle.dumps(predictions, protocol=pickle.HIGHEST_PROTOCOL)  # as torch.distributed.gather_object
        pickle_s += time.perf_counter() - t
        gather_bytes += len(data)
        rank_lists.append(data)
        t = time.perf_counter()
        writer = ShardWriter(os.path.join(shard_dir, shard_name(rank, ranks)))
        for image, image_detections in mine:
            writer.write(image["id"], image_detections)
        summaries.append(writer.close())
        shard_s += time.perf_counter() - t
    write_manifest(shard_dir, DATASET, json_file, summaries)
    with open(os.path.join(case, "gathered.pkl"), "wb") as f:
        pickle.dump(rank_lists, f, protocol=pickle.HIGHEST_PROTOCOL)
    info = {"n": n, "per_image": per_image, "ranks": ranks, "json_file": json_file,
            "annotations": len(gt["annotations"]), "detections": sum(len(d) for d in detections),
            "generation_s": generation_s, "gather_bytes": gather_bytes, "pickle_s": pickle_s,
            "shard_bytes": sum(s["bytes"] for s in summaries), "shard_write_s": shard_s}
    with open(info_file, "w") as f:
        json.dump(info, f)
    return info


def _peak_rss_mb() -> float:
    """This process's own peak resident memory: VmHWM of /proc/self/status. Not ru_maxrss: Linux carries the
    parent's high-water mark over a vfork + exec (subprocess's default) into the child's ru_maxrss, so a
    child of a parent that generated the case would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: may include the parent's


def measure(evaluator: str, work_dir: str, n: int) -> dict:
    """In this (fresh) process: one evaluation, its wall time and this process's peak resident memory."""
    import logging
    from detectron2.utils.logger import setup_logger
    from lda_det import restore_numpy_aliases
    from lda_det.data import register_lvis_format

    setup_logger(name="lda_det", abbrev_name="lda_det")
    logging.getLogger("lda_det").setLevel(logging.INFO)
    case = _case_dir(work_dir, n)
    with open(os.path.join(case, "case.json")) as f:
        info = json.load(f)
    register_lvis_format(DATASET, info["json_file"], case + os.sep, [f"c{i}" for i in range(1203)])
    restore_numpy_aliases()
    import_rss_mb = _peak_rss_mb()
    start = time.perf_counter()
    if evaluator == "detectron2":
        import itertools
        from detectron2.evaluation import LVISEvaluator
        ev = LVISEvaluator(DATASET, distributed=False, output_dir=os.path.join(case, "detectron2"),
                           max_dets_per_image=300)
        ev.reset()
        with open(os.path.join(case, "gathered.pkl"), "rb") as f:
            rank_lists = pickle.load(f)
        ev._predictions = list(itertools.chain(*[pickle.loads(data) for data in rank_lists]))  # comm.gather's result
        del rank_lists
        results = ev.evaluate()
    else:
        from lda_det.evaluation import ShardedLVISEvaluator
        results = ShardedLVISEvaluator(DATASET, os.path.join(case, "sharded"),
                                       max_dets_per_image=300).evaluate_from_shards()
    wall_s = time.perf_counter() - start
    return {"evaluator": evaluator, "n": n, "wall_s": wall_s,
            "peak_rss_mb": _peak_rss_mb(),
            "import_rss_mb": import_rss_mb, "results": results}


def _fit(ns, values):
    """Least-squares a + b N, and its value at LVIS v1 val's size."""
    import numpy as np
    ns, values = np.asarray(ns, float), np.asarray(values, float)
    if len(ns) < 2:
        return None
    b, a = np.polyfit(ns, values, 1)
    return {"a": float(a), "b": float(b), "at_val": float(a + b * LVIS_V1_VAL_IMAGES)}


def table(records) -> str:
    sizes = sorted(records, key=int)
    lines = ["| N images | detections | evaluator | wall (s) | peak RSS (MB) | bytes to rank 0 | shard bytes written "
             "| max abs AP diff |", "|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        r = records[n]
        diff = max(abs(r["sharded"]["results"][t][m] - r["detectron2"]["results"][t][m])
                   for t in ("bbox", "segm") for m in METRICS) if "detectron2" in r else float("nan")
        for name in ("detectron2", "sharded"):
            if name not in r:
                continue
            moved = r["case"]["gather_bytes"] if name == "detectron2" else 0
            written = "" if name == "detectron2" else f"{r['case']['shard_bytes'] / 1e6:.0f} MB"
            lines.append(f"| {int(n):,} | {r['case']['detections']:,} | {name} | {r[name]['wall_s']:.1f} | "
                         f"{r[name]['peak_rss_mb']:.0f} | {moved / 1e6:.0f} MB | {written} | "
                         f"{diff:.1e} |")
    fits = []
    for name in ("detectron2", "sharded"):
        ns = [int(n) for n in sizes if name in records[n]]
        for key, unit in (("wall_s", "s"), ("peak_rss_mb", "MB")):
            fit = _fit(ns, [records[str(n)][name][key] for n in ns])
            if fit:
                fits.append((name, key, unit, fit))
    if fits:
        lines += ["", f"Extrapolation to LVIS v1 val ({LVIS_V1_VAL_IMAGES:,} images), a + b N fitted on N = "
                  f"{', '.join(f'{int(n):,}' for n in sizes)}:", "",
                  "| evaluator | quantity | a | b per image | at 19,809 images |", "|---|---|---|---|---|"]
        for name, key, unit, fit in fits:
            lines.append(f"| {name} | {'wall time' if key == 'wall_s' else 'peak RSS'} | {fit['a']:.0f} {unit} | "
                         f"{fit['b']:.3f} {unit} | {fit['at_val']:,.0f} {unit} |")
        ns = [int(n) for n in sizes if "detectron2" in records[n]]
        gather = _fit(ns, [records[str(n)]["case"]["gather_bytes"] / 1e9 for n in ns])
        shards = _fit(ns, [records[str(n)]["case"]["shard_bytes"] / 1e9 for n in ns])
        if gather and shards:
            lines.append(f"| bytes | gathered to rank 0 (detectron2) / shard files (sharded) | | | "
                         f"{gather['at_val']:.1f} GB / {shards['at_val']:.1f} GB |")
    return "\n".join(lines)


def _commit() -> str:
    out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def load_records(results_dir: str) -> dict:
    """{N: {"case": ..., evaluator: measurement}} from the result files (one per evaluator and N)."""
    records = {}
    for name in sorted(os.listdir(results_dir)) if os.path.isdir(results_dir) else []:
        if name.endswith(".json"):
            with open(os.path.join(results_dir, name)) as f:
                result = json.load(f)
            record = records.setdefault(str(result["n"]), {})
            record["case"] = result["case"]
            record[result["evaluator"]] = result
    return records


def main():
    from lda_common.atomic_files import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--per-image", type=int, default=300)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--work-dir", default="/tmp/bench_lvis_eval", help="generated cases (large; not kept)")
    parser.add_argument("--results-dir", default=os.path.join(REPO, "benchmarks", "results", "lvis_eval"),
                        help="one JSON per evaluator and N (<evaluator>_n<N>.json); existing ones are skipped")
    parser.add_argument("--evaluators", nargs="+", default=["sharded", "detectron2"],
                        choices=["sharded", "detectron2"])
    parser.add_argument("--table", action="store_true", help="print the table of --results-dir and stop")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one measurement in this process
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    if args.measure:
        print("RESULT " + json.dumps(measure(args.measure, args.work_dir, args.sizes[0])))
        return
    os.makedirs(args.results_dir, exist_ok=True)
    commit = _commit()
    for n in ([] if args.table else args.sizes):
        todo = [e for e in args.evaluators
                if not os.path.isfile(os.path.join(args.results_dir, f"{e}_n{n}.json"))]
        if not todo:
            continue
        case = prepare(args.work_dir, n, args.per_image, args.ranks)
        print(f"N = {n}: {case['detections']} detections, {case['annotations']} objects", flush=True)
        for evaluator in todo:
            # A fresh process per evaluator and size: VmHWM is then this run's peak alone.
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure", evaluator, "--sizes",
                                  str(n), "--work-dir", args.work_dir], capture_output=True, text=True)
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                sys.exit(f"error: {evaluator} at N = {n} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
            result = json.loads(lines[-1][len("RESULT "):])
            result.update(case={k: v for k, v in case.items() if k != "json_file"}, commit=commit,
                          command=" ".join(["python", "benchmarks/bench_lvis_eval.py"] + sys.argv[1:]))
            print(f"  {evaluator}: {result['wall_s']:.1f} s, {result['peak_rss_mb']:.0f} MB", flush=True)
            atomic_write_json(os.path.join(args.results_dir, f"{evaluator}_n{n}.json"), result, indent=1)
    print(table(load_records(args.results_dir)))


if __name__ == "__main__":
    main()
