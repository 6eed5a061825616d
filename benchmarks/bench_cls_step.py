"""Training-step time of LDA relative to CE on the same backbone and batch, images/s, and bf16 vs fp32.

    python benchmarks/bench_cls_step.py [--backbone resnet32_cifar] [--batch 128] [--rounds 20] [--threads 0]
        [--json results.json]

Both models start from the same weights; each round times one CE step and one LDA
step back to back (alternating which goes first), so machine load hits both alike.
A step is exactly the trainer's: batch preprocess (pad-crop, flip, normalise),
forward under autocast (CUDA), criterion, backward, SGD step; CUDA is synchronised
only around the timed region. Reports medians, the LDA/CE ratio and images/s. The steps run
in the trainer's precision for SOLVER.AMP bf16 (lda_cls/precision.py: bf16 autocast on CUDA and on
CPUs with native bf16, else fp32); where that is bf16, a CE step in fp32 is timed in the same
rounds and the bf16 / fp32 speed ratio is reported.

On a busy shared CPU the whole-step ratio is noisy, so the script also times the part
that differs (head + loss, forward and backward, on fixed pooled features, many
repetitions) and reports its extra cost relative to the median CE step.
"""
import argparse
import copy
import json
import statistics
import time

import torch

from lda_cls import BatchPreprocess, LDAHead, build_model, get_cfg
from lda_cls.methods import build_method
from lda_cls.precision import autocast_dtype_for


def make_step(cfg, model, criterion, preprocess, device, autocast_dtype):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)

    def step(images, targets):
        x = preprocess(images.to(device, non_blocking=True))
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model(x)
        loss = criterion(outputs, targets.to(device, non_blocking=True))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet32_cifar")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast_dtype, precision = autocast_dtype_for("bf16", device)
    torch.manual_seed(0)

    cfg = get_cfg()
    cfg.MODEL.BACKBONE, cfg.MODEL.IN_CHANS, cfg.INPUT.SIZE = args.backbone, 3, args.size
    cfg.INPUT.MEAN, cfg.INPUT.STD = [0.49, 0.48, 0.45], [0.2, 0.2, 0.2]
    # IR-100 CIFAR-10-like counts for the class weights of the balanced risk.
    counts = [max(1, int(5000 * 0.01 ** (i / max(args.classes - 1, 1)))) for i in range(args.classes)]
    preprocess = BatchPreprocess(cfg.INPUT.MEAN, cfg.INPUT.STD, pad_crop=4, flip=True).to(device)

    steps, steps_models = {}, {}
    reference = None
    for method in ("ce", "lda"):
        cfg.METHOD = method
        model = build_model(cfg, args.classes).to(device)
        if reference is None:
            reference = copy.deepcopy(model.backbone.state_dict())
        model.backbone.load_state_dict(reference)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        model.train()
        criterion = build_method(cfg, counts).build_criterion().to(device).train()
        steps_models[method] = model
        steps[method] = make_step(cfg, model, criterion, preprocess, device, autocast_dtype)
        if method == "ce" and autocast_dtype is not None:
            fp32_model = copy.deepcopy(model)
            steps["ce_fp32"] = make_step(cfg, fp32_model, criterion, preprocess, device, None)

    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    # Long-tailed labels, as in a real batch.
    targets = torch.multinomial(torch.tensor(counts, dtype=torch.float), args.batch, replacement=True)
    if device.type == "cuda":
        images, targets = images.pin_memory(), targets.pin_memory()

    def timed(method):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        steps[method](images, targets)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    names = list(steps)
    for _ in range(args.warmup):
        for method in names:
            timed(method)
    times = {method: [] for method in names}
    for round_index in range(args.rounds):
        shift = round_index % len(names)  # rotate which step goes first
        for method in names[shift:] + names[:shift]:
            times[method].append(timed(method))
    ce, lda = statistics.median(times["ce"]), statistics.median(times["lda"])

    # The part LDA changes: head (h, h', p) + loss, forward and backward, on fixed pooled features.
    num_features = steps_models["ce"].backbone.num_features
    features = torch.randn(args.batch, num_features, device=device, requires_grad=True)
    head_times = {}
    for method in ("ce", "lda"):
        cfg.METHOD = method
        head = LDAHead(features.shape[1], args.classes, layout=method).to(device)
        criterion = build_method(cfg, counts).build_criterion().to(device).train()
        labels = targets.to(device)

        def head_step():
            criterion(head(features), labels)["loss"].backward()

        for _ in range(5):
            head_step()
        samples = []
        for _ in range(5):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(20):
                head_step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            samples.append((time.perf_counter() - start) / 20)
        head_times[method] = statistics.median(samples)
    ratios = [l / c for l, c in zip(times["lda"], times["ce"])]
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; backbone {args.backbone}, batch {args.batch}, {args.size}x{args.size}, "
          f"{args.classes} classes, {args.rounds} interleaved rounds (medians); {precision}")
    print("| method | step (ms) | images/s |")
    print("|---|---|---|")
    print(f"| CE | {1000 * ce:.1f} | {args.batch / ce:.0f} |")
    print(f"| LDA | {1000 * lda:.1f} | {args.batch / lda:.0f} |")
    print(f"LDA / CE step time: {lda / ce:.3f} (ratio of medians); median per-round ratio "
          f"{statistics.median(ratios):.3f}; overhead {100 * (lda / ce - 1):+.1f}%")
    precision_figures = {}
    if "ce_fp32" in times:
        fp32 = statistics.median(times["ce_fp32"])
        precision_ratios = [f / b for f, b in zip(times["ce_fp32"], times["ce"])]
        print(f"| CE, fp32 | {1000 * fp32:.1f} | {args.batch / fp32:.0f} |")
        print(f"bf16 autocast speed-up over fp32 (CE step): {fp32 / ce:.2f}x (ratio of medians); median per-round "
              f"ratio {statistics.median(precision_ratios):.2f}x")
        precision_figures = {"ce_fp32_step_s": fp32, "bf16_speedup": fp32 / ce,
                             "bf16_median_round_speedup": statistics.median(precision_ratios)}
    extra = head_times["lda"] - head_times["ce"]
    print(f"head + loss, forward + backward: CE {1000 * head_times['ce']:.2f} ms, "
          f"LDA {1000 * head_times['lda']:.2f} ms; "
          f"LDA's extra {1000 * extra:.2f} ms = {100 * extra / ce:.2f}% of the median CE step")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": where, "backbone": args.backbone, "batch": args.batch, "rounds": args.rounds,
                       "ce_step_s": ce, "lda_step_s": lda, "ratio_of_medians": lda / ce,
                       "median_round_ratio": statistics.median(ratios), "head_ce_s": head_times["ce"],
                       "head_lda_s": head_times["lda"], "precision": precision, **precision_figures},
                      handle, indent=2)


if __name__ == "__main__":
    main()
