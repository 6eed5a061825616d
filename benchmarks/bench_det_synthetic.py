#!/usr/bin/env python
"""Every detection head of lda_det on a synthetic long-tailed dataset: same data, schedule and seeds.

    nice -n 10 python benchmarks/bench_det_synthetic.py \
        [--config-file configs/LVIS-LDA/synthetic_lvis_profile.yaml] [--methods baseline lda eqlv2 ...] \
        [--seeds 1 2] [--parallel 2] [--iters 200] [--output-dir /tmp/bench_det_synthetic] \
        [--results-dir benchmarks/results/det_<config>_i<iters>] [KEY VALUE ...]

Trains every (method, seed) from scratch with the config, PARALLEL runs at a time, one thread each, and
prints LVIS AP / AP_r / AP_c / AP_f (bbox and segm), mean and range over the seeds, as a Markdown table.
A method is its configs/LVIS-LDA/<method>_mask_rcnn_R_50_FPN_1x.yaml (METHODS, read from the configs: a new
config is a new method): the keys in which the methods' LVIS configs differ, each at its value there
(tests/det/test_bench_det_methods.py checks that they make the LVIS config); SEED fixes initialisation and
data order. Keys that depend on the dataset are computed from it, not copied (``dataset_scaled_opts``):
EQL's frequency threshold and the federated loss's class count are LVIS v1's mapped onto the config's
training set, a two-stage method's (cRT's) stage-2 schedule is its LVIS config's fraction of stage 1.
A two-stage method starts from its stage 1's run of the same seed, so it runs after it.

Resumable: a run whose DIR/<method>_seed<s>/results.json exists is not run again; OUTPUT_DIR/summary.json
is rewritten as each run finishes. Every finished run, resumed ones included, leaves
RESULTS_DIR/<method>_seed<s>.json (method, seed, iterations, config, commit, wall time, threads, every
bbox / segm metric). --list prints each method, its LVIS config and its stage 1 (for gpu_det_lvis_methods.sh).
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import NamedTuple, Optional, Tuple

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "projects", "LDA")]

from detectron2.config import get_cfg  # noqa: E402  (the repository on the path first)

from lda_common.atomic_files import atomic_write_json  # noqa: E402
from lda_common.config_keys import flatten_config  # noqa: E402
from lda_det import model_zoo  # noqa: E402

DEFAULT_CONFIG = os.path.join(ROOT, "configs", "LVIS-LDA", "synthetic_lvis_profile.yaml")
METRICS = ("AP", "APr", "APc", "APf")
LVIS_CONFIGS = os.path.join(ROOT, "configs", "LVIS-LDA")
LVIS_SUFFIX = "mask_rcnn_R_50_FPN_1x.yaml"  # the paper's setting; one config per method
OWN_METHOD = "lda"  # the project's own configs carry no method prefix (mask_rcnn_R_50_FPN_1x.yaml)
BASELINE = "baseline"
# Not part of a method: the schedule and the initialisation are the benchmark's (a two-stage method's stage 2 is
# scaled from its LVIS config, dataset_scaled_opts), and so are the hyper-parameters under the heads' own
# config nodes (MODEL.LDA, MODEL.EQL, ...: method_free_keys), which a benchmark config tunes to its data.
NOT_METHOD_KEYS = ("SOLVER.", "MODEL.WEIGHTS")


class Method(NamedTuple):
    lvis_config: str  # the LVIS v1 config (configs/LVIS-LDA/) of this method, whose method keys ``opts`` are
    opts: Tuple[str, ...]  # KEY VALUE on top of the benchmark's config
    stage1: Optional[str] = None  # the method whose model_final.pth a two-stage method starts from


def method_free_keys(flat_keys):
    """The keys no method is made of: NOT_METHOD_KEYS and those of the config nodes lda_det adds to
    detectron2's MODEL (each head's own hyper-parameters)."""
    plain, ours = get_cfg().MODEL, model_zoo.get_config("LVIS-LDA/" + LVIS_SUFFIX).MODEL
    head_nodes = tuple(f"MODEL.{name}." for name, value in ours.items()
                       if name not in plain and isinstance(value, dict))
    return {key for key in flat_keys if key.startswith(NOT_METHOD_KEYS + head_nodes)}


def discover_methods():
    """METHODS from configs/LVIS-LDA/*mask_rcnn_R_50_FPN_1x.yaml: a method is named by its config's prefix and
    is the keys in which the methods' configs differ (each at its own value; method_free_keys aside). A method
    whose MODEL.WEIGHTS is another method's OUTPUT_DIR-style output/<config>/model_final.pth is two-stage,
    after that one."""
    configs = {name[:-len(LVIS_SUFFIX)].rstrip("_") or OWN_METHOD: name
               for name in sorted(os.listdir(LVIS_CONFIGS)) if name.endswith(LVIS_SUFFIX)}
    flat = {method: flatten_config(model_zoo.get_config("LVIS-LDA/" + name)) for method, name in configs.items()}
    varying = sorted(key for key in flat[BASELINE] if len({repr(values[key]) for values in flat.values()}) > 1)
    keys = [key for key in varying if key not in method_free_keys(varying)]
    stems = {os.path.splitext(name)[0]: method for method, name in configs.items()}
    methods = {}
    for method in [BASELINE] + sorted(set(configs) - {BASELINE}):
        weights_dir = os.path.basename(os.path.dirname(flat[method]["MODEL.WEIGHTS"]))
        opts = tuple(item for key in keys for item in (key, str(flat[method][key])))
        methods[method] = Method(configs[method], opts, stems.get(weights_dir))
    return methods


METHODS = discover_methods()


def load_train_net():
    spec = importlib.util.spec_from_file_location("lda_train_net", os.path.join(ROOT, "projects", "LDA", "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dataset_scaled_opts(method: str, config_file: str, iters: int, stage1_dir: Optional[str]) -> list:
    """The keys of ``method`` whose LVIS values depend on LVIS (its image count, class count, schedule),
    recomputed for the dataset of ``config_file`` so that they select / weigh what they do on LVIS."""
    from detectron2.data import DatasetCatalog

    from lda_det.data import synthetic_lvis_profile
    from lda_det.data.datasets import ensure_available
    from lda_det.data.lvis_v1_counts import NUM_ANNOTATED_TRAIN_IMAGES

    cfg = model_zoo.get_config(os.path.relpath(config_file, os.path.join(ROOT, "configs")))
    lvis = model_zoo.get_config("LVIS-LDA/" + METHODS[method].lvis_config)
    train = cfg.DATASETS.TRAIN[0]
    if lvis.MODEL.ROI_BOX_HEAD.PREDICTOR == "EQLOutputLayers":
        if not train.startswith(synthetic_lvis_profile.NAME):
            raise SystemExit("EQL's threshold is mapped onto the LVIS-profile set only; pass its config")
        ensure_available(train)
        # f_j = images with class j / images with an annotation (EQL's denominator); lambda = 1.1e-3 of LVIS's
        # 99,388 is 109 images, 815 of its 1203 classes: mapped so that it separates the same categories.
        annotated = sum(1 for record in DatasetCatalog.get(train) if record["annotations"])
        threshold = synthetic_lvis_profile.profile_frequency(lvis.MODEL.EQL.LAMBDA, annotated,
                                                             lvis_num_images=NUM_ANNOTATED_TRAIN_IMAGES)
        return ["MODEL.EQL.LAMBDA", f"{threshold:.6g}"]
    if lvis.MODEL.ROI_BOX_HEAD.USE_FED_LOSS:
        # The same fraction of the classes as LVIS's 50 of 1203 (at least the ground-truth classes are kept).
        classes = lvis.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES * cfg.MODEL.ROI_HEADS.NUM_CLASSES
        kept = max(1, round(classes / lvis.MODEL.ROI_HEADS.NUM_CLASSES))
        return ["MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES", str(kept)]
    if METHODS[method].stage1:
        stage1 = model_zoo.get_config("LVIS-LDA/" + METHODS[METHODS[method].stage1].lvis_config)
        fraction = lvis.SOLVER.MAX_ITER / stage1.SOLVER.MAX_ITER
        stage2_iters = max(1, round(fraction * (iters or cfg.SOLVER.MAX_ITER)))
        # Steps and warm-up at the same fractions of stage 2, lr in the same ratio to stage 1's.
        steps = tuple(round(step / lvis.SOLVER.MAX_ITER * stage2_iters) for step in lvis.SOLVER.STEPS)
        warmup = round(lvis.SOLVER.WARMUP_ITERS / lvis.SOLVER.MAX_ITER * stage2_iters)
        base_lr = lvis.SOLVER.BASE_LR / stage1.SOLVER.BASE_LR * cfg.SOLVER.BASE_LR
        return ["MODEL.WEIGHTS", os.path.join(stage1_dir, "model_final.pth"), "SOLVER.MAX_ITER", str(stage2_iters),
                "SOLVER.STEPS", str(steps), "SOLVER.WARMUP_ITERS", str(warmup),
                "SOLVER.WARMUP_FACTOR", str(lvis.SOLVER.WARMUP_FACTOR), "SOLVER.BASE_LR", f"{base_lr:.6g}"]
    return []


def run_one(config_file: str, method: str, output_dir: str, opts) -> None:
    """Train and evaluate one method in this process; write results.json into output_dir."""
    import torch
    torch.set_num_threads(1)
    train_net = load_train_net()
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", config_file] + list(METHODS[method].opts) + ["OUTPUT_DIR", output_dir] + list(opts))
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    results = {task: {k: float(v) for k, v in metrics.items()} for task, metrics in trainer._last_eval_results.items()}
    results["wall_s"] = time.perf_counter() - start
    results["opts"] = list(METHODS[method].opts) + list(opts)
    results["commit"] = git_commit()
    atomic_write_json(os.path.join(output_dir, "results.json"), results, indent=1)


def git_commit() -> Optional[str]:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_run_record(results_dir: str, method: str, seed: int, run_dir: str, config_file: str,
                     resumed: bool) -> str:
    """The small file a finished run leaves in the results directory, <method>_seed<seed>.json, from its run
    directory's results.json and config.yaml. ``resumed``: the run finished under an earlier bench process;
    its commit is then the one its results.json names, or this checkout's HEAD if it names none."""
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(run_dir, "config.yaml")) as f:
        iters = yaml.safe_load(f)["SOLVER"]["MAX_ITER"]  # cRT's: its stage 2
    record = {"method": method, "seed": seed, "iters": iters, "config": os.path.relpath(config_file, ROOT),
              "commit": results.get("commit") or git_commit(), "resumed": resumed,
              "wall_time_s": round(results["wall_s"], 1), "threads": 1,  # run_one: one thread, OMP_NUM_THREADS=1
              "bbox": results["bbox"], "segm": results["segm"]}
    path = os.path.join(results_dir, f"{method}_seed{seed}.json")
    atomic_write_json(path, record, indent=1)
    return path


def default_results_dir(config_file: str, iters: Optional[int]) -> str:
    """benchmarks/results/det_<config>_i<iterations>, e.g. det_synthetic_lvis_profile_i200."""
    if iters is None:
        iters = model_zoo.get_config(os.path.relpath(config_file, os.path.join(ROOT, "configs"))).SOLVER.MAX_ITER
    name = os.path.splitext(os.path.basename(config_file))[0]
    return os.path.join(ROOT, "benchmarks", "results", f"det_{name}_i{iters}")


def summarise(runs, results):
    """Per method and metric: the seeds' values, mean and range (max - min)."""
    summary = {}
    for method in dict.fromkeys(m for m, _ in runs):
        done = {seed: results[(m, seed)] for (m, seed) in runs if m == method and (m, seed) in results}
        entry = {"seeds": sorted(done),
                 "wall_s": [done[s]["wall_s"] for s in sorted(done)]}
        for task in ("bbox", "segm"):
            for metric in METRICS:
                values = [done[s][task][metric] for s in sorted(done)]
                entry[f"{task} {metric}"] = {
                    "values": values, "mean": sum(values) / len(values) if values else None,
                    "range": (max(values) - min(values)) if values else None}
        summary[method] = entry
    return summary


def print_table(summary, header_line):
    print(header_line)
    print("| method | seeds | " + " | ".join(f"{t} {m}" for t in ("bbox", "segm") for m in METRICS) + " |")
    print("|" + "---|" * (2 + 2 * len(METRICS)))
    for method, entry in summary.items():
        if not entry["seeds"]:
            continue
        cells = [f"{entry[f'{t} {m}']['mean']:.1f} ± {entry[f'{t} {m}']['range'] / 2:.1f}"
                 for t in ("bbox", "segm") for m in METRICS]
        print(f"| {method} | {','.join(map(str, entry['seeds']))} | " + " | ".join(cells) + " |")
    print("(mean ± half the range over the seeds)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--iters", type=int, default=None, help="override SOLVER.MAX_ITER (steps scale along)")
    parser.add_argument("--output-dir", default="/tmp/bench_det_synthetic")
    parser.add_argument("--results-dir", help="one JSON per finished run; default: "
                                              "benchmarks/results/det_<config>_i<iterations>")
    parser.add_argument("--list", action="store_true",
                        help="print METHOD LVIS_CONFIG STAGE1 ('-': none) per method and exit")
    parser.add_argument("--run-one", nargs=2, metavar=("METHOD", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config overrides, KEY VALUE ...")
    args = parser.parse_args()
    if args.list:
        for method, spec in METHODS.items():
            print(method, os.path.join("configs", "LVIS-LDA", spec.lvis_config), spec.stage1 or "-")
        return
    opts = list(args.opts)
    if args.iters:
        opts += ["SOLVER.MAX_ITER", str(args.iters),
                 "SOLVER.STEPS", f"({args.iters * 8 // 12},{args.iters * 11 // 12})"]
    if args.run_one:
        run_one(args.config_file, args.run_one[0], args.run_one[1], opts)
        return
    for method in args.methods:
        stage1 = METHODS[method].stage1
        if stage1 and stage1 not in args.methods:
            parser.error(f"--methods: {method} starts from {stage1}'s checkpoint; list {stage1} too")

    # Seed-major, so that each pair of concurrent runs shares the machine alike and a stage 1 comes first.
    runs = [(method, seed) for seed in args.seeds for method in args.methods]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    results, pending, running, failed = {}, list(runs), {}, []
    header = (f"{os.path.relpath(args.config_file, ROOT)}, seeds {args.seeds}, overrides {opts or 'none'}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    def run_dir(method, seed):
        return os.path.join(args.output_dir, f"{method}_seed{seed}")

    def write_summary():
        tmp = os.path.join(args.output_dir, "summary.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"config": args.config_file, "opts": opts, "runs": {f"{m}_seed{s}": r for (m, s), r in
                                                                          results.items()},
                       "summary": summarise(runs, results), "failed": [f"{m}_seed{s}" for m, s in failed]},
                      f, indent=1)
        os.replace(tmp, os.path.join(args.output_dir, "summary.json"))

    def ready(run):
        stage1 = METHODS[run[0]].stage1
        return stage1 is None or (stage1, run[1]) in results

    results_dir = args.results_dir or default_results_dir(args.config_file, args.iters)
    os.makedirs(args.output_dir, exist_ok=True)
    os.makedirs(results_dir, exist_ok=True)
    while pending or running:
        for run in [r for r in pending if (METHODS[r[0]].stage1, r[1]) in failed]:
            pending.remove(run)
            failed.append(run)
            print(f"{run} not run: its stage 1 failed", flush=True)
        startable = [r for r in pending if ready(r)]
        while startable and len(running) < args.parallel:
            method, seed = run = startable.pop(0)
            pending.remove(run)
            out = run_dir(method, seed)
            if os.path.isfile(os.path.join(out, "results.json")):  # resumed: already done
                with open(os.path.join(out, "results.json")) as f:
                    results[run] = json.load(f)
                if not os.path.isfile(os.path.join(results_dir, f"{method}_seed{seed}.json")):
                    write_run_record(results_dir, method, seed, out, args.config_file, resumed=True)
                startable = [r for r in pending if ready(r)]
                continue
            os.makedirs(out, exist_ok=True)
            stage1 = METHODS[method].stage1
            run_opts = opts + dataset_scaled_opts(method, args.config_file, args.iters,
                                                  run_dir(stage1, seed) if stage1 else None)
            log = open(os.path.join(out, "bench.log"), "w")
            command = [sys.executable, __file__, "--config-file", args.config_file, "--run-one", method, out,
                       "SEED", str(seed)] + run_opts
            running[run] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), out)
            print(f"{time.strftime('%H:%M:%S')} started {method} seed {seed} -> {out}", flush=True)
        if not running and pending and not startable:
            raise SystemExit(f"cannot start {pending}: their stage 1 is neither done nor pending")
        for key, (proc, out) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[key]
            if proc.returncode != 0:
                failed.append(key)
                print(f"{key} failed (exit {proc.returncode}), see {os.path.join(out, 'bench.log')}", flush=True)
            else:
                with open(os.path.join(out, "results.json")) as f:
                    results[key] = json.load(f)
                write_run_record(results_dir, key[0], key[1], out, args.config_file, resumed=False)
                print(f"{time.strftime('%H:%M:%S')} finished {key[0]} seed {key[1]}: "
                      f"bbox AP {results[key]['bbox']['AP']:.1f}, {results[key]['wall_s']:.0f} s", flush=True)
            write_summary()
        time.sleep(2)
    write_summary()
    print_table(summarise(runs, results), header)
    if failed:
        sys.exit(f"failed runs: {[f'{m}_seed{s}' for m, s in failed]}")


if __name__ == "__main__":
    main()
