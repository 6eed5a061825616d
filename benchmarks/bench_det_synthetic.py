#!/usr/bin/env python
"""Plain Mask R-CNN vs LDA on a synthetic long-tailed dataset, same schedule, several seeds.

    nice -n 10 python benchmarks/bench_det_synthetic.py \
        [--config-file configs/LVIS-LDA/synthetic_lvis_profile.yaml] [--seeds 1 2] [--parallel 2] \
        [--iters 400] [--output-dir /tmp/bench_det_synthetic] [KEY VALUE ...]

Trains every (head, seed) from scratch with the config (the ROI head is the only difference
between the two models; SEED fixes initialisation and data order), PARALLEL runs at a time,
one thread each, and prints LVIS AP / AP_r / AP_c / AP_f (bbox and segm), mean and range over
the seeds, as a Markdown table. Resumable: a run whose DIR/<head>_seed<s>/results.json exists
is not run again; OUTPUT_DIR/summary.json is rewritten as each run finishes.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "LVIS-LDA", "synthetic_lt_demo.yaml")
HEADS = {"Mask R-CNN (baseline)": "StandardROIHeads", "LDA": "LDAROIHeads"}
METRICS = ("AP", "APr", "APc", "APf")


def load_train_net():
    spec = importlib.util.spec_from_file_location("lda_train_net", os.path.join(ROOT, "projects", "LDA", "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_one(config_file: str, head: str, output_dir: str, opts) -> None:
    """Train and evaluate one head in this process; write results.json into output_dir."""
    import torch
    torch.set_num_threads(1)
    train_net = load_train_net()
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", config_file, "MODEL.ROI_HEADS.NAME", head, "OUTPUT_DIR", output_dir] + list(opts))
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    results = {task: {k: float(v) for k, v in metrics.items()} for task, metrics in trainer._last_eval_results.items()}
    results["wall_s"] = time.perf_counter() - start
    tmp = os.path.join(output_dir, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, os.path.join(output_dir, "results.json"))


def summarise(runs, results):
    """Per head and metric: the seeds' values, mean and range (max - min)."""
    summary = {}
    for label, head in HEADS.items():
        done = {seed: results[(h, seed)] for (h, seed) in runs if h == head and (h, seed) in results}
        entry = {"seeds": sorted(done), "wall_s": [done[s]["wall_s"] for s in sorted(done)]}
        for task in ("bbox", "segm"):
            for metric in METRICS:
                values = [done[s][task][metric] for s in sorted(done)]
                entry[f"{task} {metric}"] = {
                    "values": values, "mean": sum(values) / len(values) if values else None,
                    "range": (max(values) - min(values)) if values else None}
        summary[label] = entry
    return summary


def print_table(summary, header_line):
    print(header_line)
    print("| model | seeds | " + " | ".join(f"{t} {m}" for t in ("bbox", "segm") for m in METRICS) + " |")
    print("|" + "---|" * (2 + 2 * len(METRICS)))
    for label, entry in summary.items():
        if not entry["seeds"]:
            continue
        cells = [f"{entry[f'{t} {m}']['mean']:.1f} ± {entry[f'{t} {m}']['range'] / 2:.1f}"
                 for t in ("bbox", "segm") for m in METRICS]
        print(f"| {label} | {','.join(map(str, entry['seeds']))} | " + " | ".join(cells) + " |")
    print("(mean ± half the range over the seeds)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--iters", type=int, default=None, help="override SOLVER.MAX_ITER (steps scale along)")
    parser.add_argument("--output-dir", default="/tmp/bench_det_synthetic")
    parser.add_argument("--run-one", nargs=2, metavar=("HEAD", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config overrides, KEY VALUE ...")
    args = parser.parse_args()
    opts = list(args.opts)
    if args.iters:
        opts += ["SOLVER.MAX_ITER", str(args.iters),
                 "SOLVER.STEPS", f"({args.iters * 8 // 12},{args.iters * 11 // 12})"]
    if args.run_one:
        run_one(args.config_file, args.run_one[0], args.run_one[1], opts)
        return

    # Interleave the heads, so that each pair of concurrent runs shares the machine alike.
    runs = [(head, seed) for seed in args.seeds for head in HEADS.values()]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    results, pending, running, failed = {}, list(runs), {}, []
    header = (f"{os.path.relpath(args.config_file, ROOT)}, seeds {args.seeds}, overrides {opts or 'none'}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    def write_summary():
        tmp = os.path.join(args.output_dir, "summary.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"config": args.config_file, "opts": opts, "runs": {f"{h}_seed{s}": r for (h, s), r in
                                                                          results.items()},
                       "summary": summarise(runs, results), "failed": failed}, f, indent=1)
        os.replace(tmp, os.path.join(args.output_dir, "summary.json"))

    os.makedirs(args.output_dir, exist_ok=True)
    while pending or running:
        while pending and len(running) < args.parallel:
            head, seed = pending.pop(0)
            out = os.path.join(args.output_dir, f"{head}_seed{seed}")
            if os.path.isfile(os.path.join(out, "results.json")):  # resumed: already done
                with open(os.path.join(out, "results.json")) as f:
                    results[(head, seed)] = json.load(f)
                continue
            os.makedirs(out, exist_ok=True)
            log = open(os.path.join(out, "bench.log"), "w")
            command = [sys.executable, __file__, "--config-file", args.config_file, "--run-one", head, out,
                       "SEED", str(seed)] + opts
            running[(head, seed)] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), out)
            print(f"{time.strftime('%H:%M:%S')} started {head} seed {seed} -> {out}", flush=True)
        for key, (proc, out) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[key]
            if proc.returncode != 0:
                failed.append(f"{key[0]}_seed{key[1]}")
                print(f"{key} failed (exit {proc.returncode}), see {os.path.join(out, 'bench.log')}", flush=True)
            else:
                with open(os.path.join(out, "results.json")) as f:
                    results[key] = json.load(f)
                print(f"{time.strftime('%H:%M:%S')} finished {key[0]} seed {key[1]}: "
                      f"bbox AP {results[key]['bbox']['AP']:.1f}, {results[key]['wall_s']:.0f} s", flush=True)
            write_summary()
        time.sleep(2)
    write_summary()
    print_table(summarise(runs, results), header)
    if failed:
        sys.exit(f"failed runs: {failed}")


if __name__ == "__main__":
    main()
