"""Forward+backward time of LDALoss against a per-class-loop implementation.

The baseline below is the straightforward way to write the same terms (one
Python iteration per class present in the batch, boolean-mask indexing, as in
the official code), checked to give the same value. Each size is measured in
paired rounds: every round times LDALoss and the loop back to back (in
alternating order), and the speed-up is the median of the per-round ratios, so
the load of a shared machine mostly cancels out. Gradients are reset to None
after each step, as ``optimizer.zero_grad()`` does. A last row compares LDALoss
with a whole ResNet-32 training step at batch 128.

    python benchmarks/bench_loss.py [--threads 1 2] [--rounds 7]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from lda_core import LDALoss, class_divergence

SIZES = [(128, 100), (256, 1000), (512, 1000)]
FEATURE_DIM = 128


def long_tailed_labels(batch_size: int, num_classes: int, imbalance: float = 100.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    profile = imbalance ** (-torch.arange(num_classes) / (num_classes - 1))
    return torch.multinomial(profile / profile.sum(), batch_size, replacement=True, generator=g)


def per_class_loop_divergence(features, targets, margin):
    """Eq. 7 and 8 with a Python loop over the classes present in the batch."""
    centres, spreads, sizes = [], [], []
    for label in targets.unique():
        members = features[targets == label]
        centre = members.mean(0)
        centres.append(centre)
        spreads.append((1 - F.cosine_similarity(centre[None], members)).mean())
        sizes.append(members.shape[0])
    centres, spreads, sizes = torch.stack(centres), torch.stack(spreads), torch.tensor(sizes)
    intra = spreads[sizes > 1].mean() if (sizes > 1).any() else spreads.sum() * 0
    unit = F.normalize(centres, dim=1)
    k = centres.shape[0]
    hinge = (margin - (1 - unit @ unit.t())).clamp(min=0) * (1 - torch.eye(k))
    return intra, hinge.sum() / max(k * k - k, 1)


def per_class_loop_loss(criterion: LDALoss, unbalanced_logits, balanced_logits, targets, features):
    """Same value as LDALoss in training mode, written with a Python loop over classes."""
    criterion.balance.update(unbalanced_logits.detach(), balanced_logits.detach(), targets)
    alpha, _ = criterion.balance.alpha()
    loss_unbalanced = F.cross_entropy(unbalanced_logits, targets)
    loss_balanced = (criterion.class_weights[targets] * F.cross_entropy(balanced_logits, targets, reduction="none")).sum()
    intra, inter = per_class_loop_divergence(features, targets, criterion.margin)
    return (criterion.unbalanced_factor * loss_unbalanced + criterion.balanced_factor * alpha * loss_balanced
            + criterion.beta * (intra + inter))


def make_inputs(batch_size, num_classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = long_tailed_labels(batch_size, num_classes, seed=seed)
    leaf = lambda *s: torch.randn(*s, generator=g).requires_grad_()
    return leaf(batch_size, num_classes), leaf(batch_size, num_classes), targets, leaf(batch_size, FEATURE_DIM)


def training_step(loss_fn, leaves):
    """Forward + backward, then drop the gradients as ``optimizer.zero_grad()`` does."""
    def run():
        loss_fn().backward()
        for leaf in leaves:
            leaf.grad = None
    return run


def paired_rounds(functions, pairs, rounds, min_run_time):
    """Median time of each function, and per (label, fast, baseline) pair the per-round ratios baseline / fast."""
    times = {name: [] for pair in pairs for name in pair[1:]}
    ratios = {pair[0]: [] for pair in pairs}
    for round_index in range(rounds):
        for label, fast, baseline in pairs:
            order = (fast, baseline) if round_index % 2 == 0 else (baseline, fast)
            measured = {}
            for name in order:
                measured[name] = benchmark.Timer("run()", globals=dict(run=functions[name])).blocked_autorange(
                    min_run_time=min_run_time).median
                times[name].append(measured[name])
            ratios[label].append(measured[baseline] / measured[fast])
    return {name: statistics.median(values) for name, values in times.items()}, ratios


def time_loss(batch_size, num_classes, rounds, min_run_time):
    counts = (1000 * 100 ** (-torch.arange(num_classes) / (num_classes - 1))).floor()
    vectorised, looped = LDALoss(counts, window=10), LDALoss(counts, window=10)
    u, b, t, f = make_inputs(batch_size, num_classes)
    reference = vectorised(u, b, t, f)["loss"]
    torch.testing.assert_close(reference, per_class_loop_loss(looped, u, b, t, f), rtol=1e-4, atol=1e-5)
    leaves = (u, b, f)
    functions = {
        "LDALoss": training_step(lambda: vectorised(u, b, t, f)["loss"], leaves),
        "per-class loop": training_step(lambda: per_class_loop_loss(looped, u, b, t, f), leaves),
        # Eq. 7-8 alone: the part that vectorisation changes (both pay the same cross entropies).
        "divergence": training_step(lambda: sum(class_divergence(f, t)), leaves),
        "divergence loop": training_step(lambda: sum(per_class_loop_divergence(f, t, 1.0)), leaves),
    }
    times, ratios = paired_rounds(functions, [("loss", "LDALoss", "per-class loop"),
                                              ("divergence", "divergence", "divergence loop")],
                                  rounds, min_run_time)
    return times, ratios, int(t.unique().numel())


def time_resnet32_step(criterion_time_batch128, threads):
    try:
        import timm
        import lda_cls  # noqa: F401  (registers resnet32_cifar with timm)
    except ImportError as error:
        print(f"\nResNet-32 comparison skipped: {error}")
        return
    if not timm.is_model("resnet32_cifar"):
        print("\nResNet-32 comparison skipped: resnet32_cifar is not registered")
        return
    model = timm.create_model("resnet32_cifar", num_classes=100)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.randn(128, 3, 32, 32), long_tailed_labels(128, 100)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    step_time = benchmark.Timer("train_step()", globals=dict(train_step=train_step)).blocked_autorange(
        min_run_time=3.0).median
    print(f"\n{threads} thread(s): ResNet-32 CE training step, batch 128, 32x32: {step_time * 1e3:.1f} ms; "
          f"LDALoss (128, C=100): {criterion_time_batch128 * 1e3:.2f} ms "
          f"= {100 * criterion_time_batch128 / step_time:.2f} % of the step")


def ratio_cell(ratios):
    return f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-run-time", type=float, default=0.3, help="seconds per timing in a round")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, feature dim {FEATURE_DIM}, forward+backward, {args.rounds} paired rounds; "
          "time = median over rounds, speed-up = median of per-round ratios (min-max)\n")
    print("| threads | batch | classes C | classes in batch | LDALoss (ms) | per-class loop (ms) | speed-up "
          "| Eq. 7-8 alone (ms) | its loop (ms) | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    first = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch_size, num_classes in SIZES:
            times, ratios, present = time_loss(batch_size, num_classes, args.rounds, args.min_run_time)
            first.setdefault(threads, times["LDALoss"])
            print(f"| {threads} | {batch_size} | {num_classes} | {present} | {times['LDALoss'] * 1e3:.2f} | "
                  f"{times['per-class loop'] * 1e3:.2f} | {ratio_cell(ratios['loss'])} | "
                  f"{times['divergence'] * 1e3:.2f} | {times['divergence loop'] * 1e3:.2f} | "
                  f"{ratio_cell(ratios['divergence'])} |", flush=True)
    for threads, criterion_time in first.items():
        torch.set_num_threads(threads)
        time_resnet32_step(criterion_time, threads)


if __name__ == "__main__":
    main()
