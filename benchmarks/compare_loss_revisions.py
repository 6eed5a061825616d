"""LDALoss at a git revision against the working tree: forward + backward, paired rounds.

For checking that a change to lda_core is faster (or not slower). The revision's
lda_core is extracted with ``git archive`` into a temporary package, so both run in
one process on the same inputs; rounds alternate the order, and the result is the
median over rounds of (working tree time / revision time).

    python benchmarks/compare_loss_revisions.py REV [--size 256x1000] [--part loss|divergence] [--threads 2]
"""
import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_loss import make_inputs, training_step  # noqa: E402

ROOT = os.path.dirname(HERE)


def import_revision(revision: str, workdir: str):
    """lda_core as of ``revision``, imported as the package ``lda_core_at_revision``."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision, "lda_core"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", workdir], input=archive.stdout, check=True)
    os.rename(os.path.join(workdir, "lda_core"), os.path.join(workdir, "lda_core_at_revision"))
    for name in os.listdir(os.path.join(workdir, "lda_core_at_revision")):
        path = os.path.join(workdir, "lda_core_at_revision", name)
        if name.endswith(".py"):
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(text.replace("from lda_core", "from lda_core_at_revision"))
    sys.path.insert(0, workdir)
    return importlib.import_module("lda_core_at_revision")


def loss_step(module, part, counts, inputs):
    """One forward + backward of ``module``'s LDALoss (or its divergence alone)."""
    unbalanced, balanced, targets, features = inputs
    criterion = module.LDALoss(counts, window=10)
    if part == "loss":
        loss = lambda: criterion(unbalanced, balanced, targets, features)["loss"]
    else:
        loss = lambda: sum(module.class_divergence(features, targets))
    return training_step(loss, (unbalanced, balanced, features))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision")
    parser.add_argument("--size", default="256x1000", help="BATCHxCLASSES")
    parser.add_argument("--part", choices=("loss", "divergence"), default="loss")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--calls", type=int, default=15, help="calls per timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch_size, num_classes = (int(v) for v in args.size.split("x"))
    counts = (1000 * 100 ** (-torch.arange(num_classes) / (num_classes - 1))).floor()
    inputs = make_inputs(batch_size, num_classes)
    import lda_core
    with tempfile.TemporaryDirectory() as workdir:
        steps = {args.revision: loss_step(import_revision(args.revision, workdir), args.part, counts, inputs),
                 "working tree": loss_step(lda_core, args.part, counts, inputs)}
        times = {name: [] for name in steps}
        for round_index in range(args.rounds):
            for name, step in (steps.items() if round_index % 2 else reversed(list(steps.items()))):
                step()
                start = time.perf_counter()
                for _ in range(args.calls):
                    step()
                times[name].append((time.perf_counter() - start) / args.calls)
    print(f"{args.part} at {args.size}, {args.threads} thread(s), {args.rounds} rounds of {args.calls} calls")
    for name, values in times.items():
        print(f"  {name}: median {statistics.median(values) * 1e3:.2f} ms per call")
    ratios = [new / old for new, old in zip(times["working tree"], times[args.revision])]
    print(f"  working tree / {args.revision}: {statistics.median(ratios):.3f} (median of per-round ratios)")


if __name__ == "__main__":
    main()
