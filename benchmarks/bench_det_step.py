#!/usr/bin/env python
"""Training-iteration time of lda_det's ROI heads relative to detectron2's StandardROIHeads.

    nice -n 10 python benchmarks/bench_det_step.py [--config-file configs/LVIS-LDA/synthetic_lt_demo.yaml]
        [--methods baseline lda eql eqlv2 seesaw federated crt] [--rounds 10] [--steps-per-round 5]
        [--threads 1] [--json results.json] [KEY VALUE ...]

Builds every method's model from the same config (only the method's keys differ: those of
benchmarks/bench_det_synthetic.py's METHODS, i.e. of its LVIS config; the federated loss keeps
at most NUM_CLASSES + 1 classes; cRT is its stage 2, everything frozen but the classifier, from
the initialisation) and the same seed, feeds them the same pre-loaded batches, and times full
training steps (forward, backward, SGD step) in interleaved blocks, so that machine load hits all
alike. Prints per-step medians and each method's ratio to the baseline (LDA's target: under 1.03);
on CUDA also each head's peak GPU memory (torch.cuda.max_memory_allocated over its steps; all
models stay resident, so the step's own share is also given: peak minus what was allocated when
its block began). Default --methods: baseline and lda.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(os.path.dirname(HERE), "configs", "LVIS-LDA", "synthetic_lt_demo.yaml")


def load_methods():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_det_synthetic", os.path.join(HERE, "bench_det_synthetic.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.METHODS


def method_opts(method, methods, cfg_classes: int):
    opts = list(methods[method].opts)
    if dict(zip(opts[::2], opts[1::2])).get("MODEL.ROI_BOX_HEAD.USE_FED_LOSS") == "True":
        # detectron2 samples this many classes: at most all of them and the background
        opts += ["MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES", str(min(50, cfg_classes + 1))]
    return opts


def build(config_file, method_keys, opts):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer

    from lda_det import add_lda_config
    cfg = get_cfg()
    add_lda_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts) + list(method_keys))
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    if cfg.MODEL.TRAINABLE_PARAMETERS:  # cRT's stage 2, as train_net.Trainer.build_model freezes it
        from lda_det.decoupling import restrict_trainable_parameters
        restrict_trainable_parameters(model, cfg.MODEL.TRAINABLE_PARAMETERS)
    return cfg, model, build_optimizer(cfg, model)


def step(model, optimizer, batch):
    loss = sum(model(batch).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if loss.device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps-per-round", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--num-batches", type=int, default=6)
    parser.add_argument("--methods", nargs="+", default=["baseline", "lda"],
                        help="bench_det_synthetic.py's METHODS; each is compared with the baseline")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from detectron2.data import build_detection_train_loader
    from detectron2.utils.events import EventStorage

    methods = load_methods()
    heads = list(dict.fromkeys(["baseline"] + args.methods))  # the baseline is the reference
    classes = build(args.config_file, [], args.opts)[0].MODEL.ROI_HEADS.NUM_CLASSES
    models = {head: build(args.config_file, method_opts(head, methods, classes), args.opts) for head in heads}
    HEADS = heads
    cfg = models[HEADS[0]][0]
    loader = iter(build_detection_train_loader(cfg))
    batches = [next(loader) for _ in range(args.num_batches)]
    times = {head: [] for head in HEADS}
    on_cuda = torch.device(cfg.MODEL.DEVICE).type == "cuda"
    peak_mb, step_peak_mb = {}, {}
    with EventStorage(0):
        for head in HEADS:
            _, model, optimizer = models[head]
            for i in range(args.warmup):
                step(model, optimizer, batches[i % len(batches)])
        for r in range(args.rounds):
            order = HEADS if r % 2 == 0 else HEADS[::-1]  # alternate who goes first
            for head in order:
                _, model, optimizer = models[head]
                if on_cuda:
                    torch.cuda.synchronize()
                    resident = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                for i in range(args.steps_per_round):
                    start = time.perf_counter()
                    step(model, optimizer, batches[(r * args.steps_per_round + i) % len(batches)])
                    times[head].append(time.perf_counter() - start)
                if on_cuda:
                    peak = torch.cuda.max_memory_allocated()
                    peak_mb[head] = max(peak_mb.get(head, 0), peak / 2**20)
                    step_peak_mb[head] = max(step_peak_mb.get(head, 0), (peak - resident) / 2**20)
    device = cfg.MODEL.DEVICE
    print(f"config {os.path.relpath(args.config_file)}, overrides {args.opts or 'none'}, device {device}, "
          f"{torch.get_num_threads()} thread(s), batch {cfg.SOLVER.IMS_PER_BATCH}, "
          f"{args.rounds} interleaved rounds x {args.steps_per_round} steps")
    k = args.steps_per_round
    # Per round, the heads ran back to back: the median of those ratios resists load drift.
    per_round = {head: [statistics.median(times[head][r * k:(r + 1) * k])
                        / statistics.median(times["baseline"][r * k:(r + 1) * k]) for r in range(args.rounds)]
                 for head in HEADS}
    print("| method | median step (s) | mean step (s) | / baseline (median of per-round ratios) |")
    print("|---|---|---|---|")
    for head in HEADS:
        print(f"| {head} | {statistics.median(times[head]):.4f} | {statistics.mean(times[head]):.4f} | "
              f"{statistics.median(per_round[head]):.3f} |")
    if "lda" in HEADS:
        ratio_median = statistics.median(times["lda"]) / statistics.median(times["baseline"])
        ratio_total = sum(times["lda"]) / sum(times["baseline"])
        print(f"LDA / standard: {statistics.median(per_round['lda']):.3f} (median of per-round ratios), "
              f"{ratio_median:.3f} (ratio of medians), {ratio_total:.3f} (totals); target < 1.03")
    if on_cuda:
        print(f"device {torch.cuda.get_device_name()}: peak memory (MB, both models resident / the step's own): "
              + ", ".join(f"{head} {peak_mb[head]:.0f} / {step_peak_mb[head]:.0f}" for head in HEADS))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"config": os.path.relpath(args.config_file), "overrides": args.opts, "device": device,
                       "device_name": torch.cuda.get_device_name() if on_cuda else "cpu",
                       "batch": cfg.SOLVER.IMS_PER_BATCH, "rounds": args.rounds,
                       "steps_per_round": args.steps_per_round,
                       "median_step_s": {head: statistics.median(times[head]) for head in HEADS},
                       "median_round_ratio_to_baseline": {head: statistics.median(per_round[head])
                                                          for head in HEADS},
                       # LDA / baseline, the figure gpu_validate_summary.py reports:
                       "median_round_ratio": statistics.median(per_round["lda"]) if "lda" in HEADS else None,
                       "ratio_of_medians": ratio_median if "lda" in HEADS else None,
                       "peak_memory_mb": peak_mb or None, "step_peak_memory_mb": step_peak_mb or None},
                      handle, indent=2)


if __name__ == "__main__":
    sys.exit(main())
