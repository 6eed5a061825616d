"""The figures of benchmarks/gpu_validate.sh: one table (OUT/summary.md) and one JSON file (OUT/figures.json).

    python benchmarks/gpu_validate_summary.py WORK OUT [--dry-run 0|1]
    python benchmarks/gpu_validate_summary.py --cifar-epochs WORK SECONDS_LEFT

The second form prints the longest CIFAR-10-LT schedule (epochs, at most the paper's 200)
that fits in SECONDS_LEFT, from the step times bench_cls_step.py measured in this run.
"""
import argparse
import json
import os
import re
import sys

PAPER_EPOCHS = 200
# A trainer step costs more than the benchmark's bare step (scheduler, loss bookkeeping, logging),
# and CE and LDA share the GPU as two processes: assume the worst, fully serialised.
STEP_OVERHEAD = 1.25
PARALLEL_RUNS = 2
FIXED_S = 30  # start-up, cuDNN autotuning, the final evaluation, writing the results


def load(path):
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def cifar_epochs(work: str, seconds_left: float) -> int:
    step, data = load(os.path.join(work, "cls_step.json")), load(os.path.join(work, "cifar_data.json"))
    if step is None or data is None:
        raise SystemExit("cls_step.json or cifar_data.json missing: run the cls_step step first, or set CIFAR_EPOCHS")
    per_epoch = (data["train"] // 128) * max(step["ce_step_s"], step["lda_step_s"]) * STEP_OVERHEAD * PARALLEL_RUNS
    return max(0, min(PAPER_EPOCHS, int((seconds_left - FIXED_S) / per_epoch)))


def read_status(work):
    status = {}
    with open(os.path.join(work, "status.tsv")) as handle:
        for line in handle:
            name, state, seconds = line.rstrip("\n").split("\t")
            status[name] = (state, int(seconds))
    return status


def env_line(out):
    path = os.path.join(out, "env.txt")
    if not os.path.isfile(path):
        return "unknown"
    text = open(path).read()
    versions = dict(re.findall(r"^(torch|numpy|detectron2) (\S+)", text, flags=re.M))
    python = re.search(r"^python (\S+)", text, flags=re.M)
    device = re.search(r"^device: (.*?) \|", text, flags=re.M)
    return (f"{device.group(1) if device else 'CPU (dry run)'}; Python {python.group(1) if python else '?'}, "
            f"torch {versions.get('torch', '?')}, numpy {versions.get('numpy', '?')}, "
            f"detectron2 {versions.get('detectron2', '?')}")


def tests_line(out):
    path = os.path.join(out, "tests.txt")
    if not os.path.isfile(path):
        return None
    lines = [line for line in open(path).read().splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
    return lines[-1].strip("= ") if lines else None


def cifar_runs(work):
    runs = {}
    for method in ("ce", "lda"):
        results = load(os.path.join(work, f"cifar10_lt_{method}", "results.json"))
        if results is not None:
            runs[method] = results
    return runs


def fmt(value):
    return "-" if value is None else f"{value:.2f}"


def summarize(work: str, out: str, dry_run: bool) -> str:
    status = read_status(work)
    cls_step = load(os.path.join(work, "cls_step.json"))
    det_step = load(os.path.join(work, "det_step.json"))
    schedule = load(os.path.join(work, "cifar_schedule.json"))
    runs = cifar_runs(work)
    rows = [("device", env_line(out))]
    state = lambda name: f"{status[name][0]}, {status[name][1]} s" if name in status else "not run"
    rows.append(("CUDA-only tests", f"{tests_line(out) or '-'} ({state('tests')})"))
    if cls_step:
        rows.append(("classification step, LDA / CE",
                     f"{cls_step['median_round_ratio']:.3f} (median per-round ratio; CE {1000 * cls_step['ce_step_s']:.2f} ms,"
                     f" LDA {1000 * cls_step['lda_step_s']:.2f} ms; {cls_step['backbone']}, batch {cls_step['batch']})"
                     f" ({state('cls_step')})"))
    else:
        rows.append(("classification step, LDA / CE", state("cls_step")))
    if det_step:
        steps = det_step["median_step_s"]
        text = (f"{det_step['median_round_ratio']:.3f} (median per-round ratio; standard "
                f"{1000 * steps['baseline']:.1f} ms, LDA {1000 * steps['lda']:.1f} ms; "
                f"{det_step['config']}, batch {det_step['batch']})")
        if det_step.get("peak_memory_mb"):
            peak, own = det_step["peak_memory_mb"], det_step["step_peak_memory_mb"]
            text += (f"; peak memory standard {peak['baseline']:.0f} MB (step {own['baseline']:.0f}),"
                     f" LDA {peak['lda']:.0f} MB (step {own['lda']:.0f})")
        rows.append(("detection step, LDA / standard ROI head", f"{text} ({state('det_step')})"))
    else:
        rows.append(("detection step, LDA / standard ROI head", state("det_step")))
    if runs and schedule:
        backbone = next(iter(runs.values()))["backbone"]
        label = (f"CIFAR-10-LT IR 100, {backbone}, {schedule['epochs']} of the paper's {PAPER_EPOCHS} epochs"
                 f" (milestones {schedule['milestones']}, warm-up {schedule['warmup']}), images on the device")
        ce, lda = runs.get("ce"), runs.get("lda")
        for name, metrics in (("CE", ce and ce["balanced"]), ("LDA (h)", lda and lda["balanced"]),
                              ("LDA (h')", lda and lda["unbalanced"])):
            if metrics:
                rows.append((f"{label}: {name}", f"top-1 {fmt(metrics['top1'])}, many {fmt(metrics['many'])}, "
                             f"medium {fmt(metrics['medium'])}, few {fmt(metrics['few'])}"))
        rows.append((f"{label}: wall time (both runs)", state("cifar")))
    else:
        rows.append(("CIFAR-10-LT IR 100", state("cifar")))
    rows.append(("total wall time", f"{status['total'][1]} s" if "total" in status else "-"))
    title = "gpu_validate (dry run on the CPU, tiny sizes: no figure here is a result)" if dry_run else "gpu_validate"
    table = "\n".join([f"### {title}", "", "| check | result |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
    with open(os.path.join(out, "summary.md"), "w") as handle:
        handle.write(table + "\n")
    with open(os.path.join(out, "figures.json"), "w") as handle:
        json.dump({"dry_run": dry_run, "status": status, "cls_step": cls_step, "det_step": det_step,
                   "cifar_schedule": schedule, "cifar10_lt": runs}, handle, indent=2)
    return table


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--cifar-epochs":
        print(cifar_epochs(sys.argv[2], float(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work")
    parser.add_argument("out")
    parser.add_argument("--dry-run", default="0")
    args = parser.parse_args()
    print(summarize(args.work, args.out, args.dry_run == "1"))


if __name__ == "__main__":
    main()
