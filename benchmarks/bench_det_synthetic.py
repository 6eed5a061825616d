#!/usr/bin/env python
"""Plain Mask R-CNN vs LDA on the synthetic long-tailed dataset, same schedule.

    nice -n 10 python benchmarks/bench_det_synthetic.py [--iters 400] [--output-dir /tmp/bench_det_synthetic]

Trains both from scratch with configs/LVIS-LDA/synthetic_lt_demo.yaml (the ROI head is
the only difference), concurrently, one thread each, and prints LVIS AP / AP_r / AP_c /
AP_f (bbox and segm) side by side as a Markdown table.
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
CONFIG = os.path.join(ROOT, "configs", "LVIS-LDA", "synthetic_lt_demo.yaml")
HEADS = {"Mask R-CNN (baseline)": "StandardROIHeads", "LDA": "LDAROIHeads"}
METRICS = ("AP", "APr", "APc", "APf")


def load_train_net():
    spec = importlib.util.spec_from_file_location("lda_train_net", os.path.join(ROOT, "projects", "LDA", "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_one(head: str, output_dir: str, opts) -> None:
    """Train and evaluate one head in this process; write results.json into output_dir."""
    import torch
    torch.set_num_threads(1)
    train_net = load_train_net()
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", CONFIG, "MODEL.ROI_HEADS.NAME", head, "OUTPUT_DIR", output_dir] + list(opts))
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    results = {task: {k: float(v) for k, v in metrics.items()} for task, metrics in trainer._last_eval_results.items()}
    results["wall_s"] = time.perf_counter() - start
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        run_one(args.run_one[0], args.run_one[1], opts)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = {}
    for label, head in HEADS.items():
        out = os.path.join(args.output_dir, head)
        os.makedirs(out, exist_ok=True)
        log = open(os.path.join(out, "bench.log"), "w")
        procs[label] = (subprocess.Popen([sys.executable, __file__, "--run-one", head, out] + opts,
                                         stdout=log, stderr=subprocess.STDOUT, env=env), out)
    results = {}
    for label, (proc, out) in procs.items():
        if proc.wait() != 0:
            sys.exit(f"{label} failed, see {os.path.join(out, 'bench.log')}")
        with open(os.path.join(out, "results.json")) as f:
            results[label] = json.load(f)
    print(f"Synthetic long-tailed LVIS-format dataset, {CONFIG}, overrides {opts or 'none'}")
    header = "| model | " + " | ".join(f"bbox {m}" for m in METRICS) + " | " + " | ".join(
        f"segm {m}" for m in METRICS) + " | train+eval wall (s) |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(METRICS)))
    for label, r in results.items():
        cells = [f"{r[task][m]:.1f}" for task in ("bbox", "segm") for m in METRICS]
        print(f"| {label} | " + " | ".join(cells) + f" | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
