#!/usr/bin/env python
"""Training-iteration time of the LDA ROI head relative to detectron2's StandardROIHeads.

    nice -n 10 python benchmarks/bench_det_step.py [--config-file configs/LVIS-LDA/synthetic_lt_demo.yaml]
        [--rounds 10] [--steps-per-round 5] [--threads 1] [--json results.json] [KEY VALUE ...]

Builds both models from the same config (only MODEL.ROI_HEADS.NAME differs) and the
same seed, feeds them the same pre-loaded batches, and times full training steps
(forward, backward, SGD step) in interleaved blocks, so that machine load hits both
alike. Prints per-step medians and the ratio LDA / standard (target: under 1.03); on CUDA
also each head's peak GPU memory (torch.cuda.max_memory_allocated over its steps; both
models stay resident, so the step's own share is also given: peak minus what was
allocated when its block began).
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
HEADS = ("StandardROIHeads", "LDAROIHeads")


def build(config_file, head, opts):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer

    from lda_det import add_lda_config
    cfg = get_cfg()
    add_lda_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts) + ["MODEL.ROI_HEADS.NAME", head])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
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
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from detectron2.data import build_detection_train_loader
    from detectron2.utils.events import EventStorage

    models = {head: build(args.config_file, head, args.opts) for head in HEADS}
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
    print("| ROI head | median step (s) | mean step (s) |")
    print("|---|---|---|")
    for head in HEADS:
        print(f"| {head} | {statistics.median(times[head]):.4f} | {statistics.mean(times[head]):.4f} |")
    ratio_median = statistics.median(times["LDAROIHeads"]) / statistics.median(times["StandardROIHeads"])
    ratio_total = sum(times["LDAROIHeads"]) / sum(times["StandardROIHeads"])
    # Per round, the two heads ran back to back: the median of those ratios resists load drift.
    k = args.steps_per_round
    per_round = [statistics.median(times["LDAROIHeads"][r * k:(r + 1) * k])
                 / statistics.median(times["StandardROIHeads"][r * k:(r + 1) * k]) for r in range(args.rounds)]
    print(f"LDA / standard: {statistics.median(per_round):.3f} (median of per-round ratios), "
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
                       "median_round_ratio": statistics.median(per_round), "ratio_of_medians": ratio_median,
                       "peak_memory_mb": peak_mb or None, "step_peak_memory_mb": step_peak_mb or None},
                      handle, indent=2)


if __name__ == "__main__":
    sys.exit(main())
