"""Forward+backward time of LDALoss against a per-class-loop implementation.

The baseline below is the straightforward way to write the same terms (one
Python iteration per class present in the batch, boolean-mask indexing, as in
the official code), checked to give the same value. The two are timed
interleaved, one loop call then as many LDALoss calls as take about as long,
and the speed-up is the median of those paired ratios, so the drifting speed of
a shared machine mostly cancels out. Gradients are reset to None
after each step, as ``optimizer.zero_grad()`` does. A last row compares LDALoss
with a whole ResNet-32 training step at batch 128.

    python benchmarks/bench_loss.py [--threads 2 1] [--seconds 20] [--sizes 256x1000]
"""
import argparse
import statistics
import time

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


def interleaved(fast, baseline, seconds):
    """Per-call times of ``fast`` and ``baseline``, measured alternately.

    Each pair is one baseline call and, right after it, enough fast calls to take
    about as long, so both see the machine in the same state; the speed of this
    shared machine drifts within seconds, which one-function-at-a-time timers
    (torch.utils.benchmark.Timer) cannot pair away.
    """
    for function in (fast, baseline):  # warm-up
        function()
    start = time.perf_counter()
    baseline()
    middle = time.perf_counter()
    fast()
    calls = max(1, round((middle - start) / (time.perf_counter() - middle)))
    fast_times, baseline_times = [], []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(fast_times) < 3:
        start = time.perf_counter()
        baseline()
        middle = time.perf_counter()
        for _ in range(calls):
            fast()
        baseline_times.append(middle - start)
        fast_times.append((time.perf_counter() - middle) / calls)
    return fast_times, baseline_times


def time_loss(batch_size, num_classes, seconds):
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
    results = {}
    for label, fast, baseline in (("loss", "LDALoss", "per-class loop"),
                                  ("divergence", "divergence", "divergence loop")):
        fast_times, baseline_times = interleaved(functions[fast], functions[baseline], seconds)
        results[label] = (statistics.median(fast_times), statistics.median(baseline_times),
                          [b / f for f, b in zip(fast_times, baseline_times)])
    return results, int(t.unique().numel())


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
    deciles = statistics.quantiles(ratios, n=10)
    return f"{statistics.median(ratios):.1f}x ({deciles[0]:.1f}-{deciles[-1]:.1f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--seconds", type=float, default=20.0, help="interleaved timing per size and pair")
    parser.add_argument("--sizes", nargs="+", default=[f"{b}x{c}" for b, c in SIZES],
                        help="BATCHxCLASSES, e.g. 256x1000")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    print(f"torch {torch.__version__}, feature dim {FEATURE_DIM}, forward+backward, interleaved for "
          f"{args.seconds:g} s per size; time = median per call, speed-up = median of the paired ratios "
          "(10th-90th percentile)\n")
    print("| threads | batch | classes C | classes in batch | LDALoss (ms) | per-class loop (ms) | speed-up "
          "| Eq. 7-8 alone (ms) | its loop (ms) | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    at_cifar_size = {}  # LDALoss time at (128, C=100), for the ResNet-32 comparison
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch_size, num_classes in sizes:
            results, present = time_loss(batch_size, num_classes, args.seconds)
            (loss_time, loop_time, loss_ratios), (div_time, div_loop_time, div_ratios) = \
                results["loss"], results["divergence"]
            if (batch_size, num_classes) == (128, 100):
                at_cifar_size[threads] = loss_time
            print(f"| {threads} | {batch_size} | {num_classes} | {present} | {loss_time * 1e3:.2f} | "
                  f"{loop_time * 1e3:.2f} | {ratio_cell(loss_ratios)} | {div_time * 1e3:.2f} | "
                  f"{div_loop_time * 1e3:.2f} | {ratio_cell(div_ratios)} |", flush=True)
    for threads, criterion_time in at_cifar_size.items():
        torch.set_num_threads(threads)
        time_resnet32_step(criterion_time, threads)


if __name__ == "__main__":
    main()
