"""CE vs LDA accuracy on digits_lt and on long-tailed CIFAR-10 (IR 100), CPU-sized schedules.

    python benchmarks/bench_cls_accuracy.py [--out /tmp/bench_cls] [--cifar-epochs 12] [--only digits|cifar]

* digits_lt: the embedded default (resnet8_cifar, 30 epochs, cosine), both methods;
  the epoch is selected on its validation split (20 images per class), never on test.
* cifar10_lt: IR 100 (12,406 training images) from the JPEG tree in
  ../shared/data/cifar10-jpg.tar.gz (extracted once to --cifar-root, decoded once into
  a uint8 tensor cache under --out), ResNet-32, batch 128, lr 0.1, wd 2e-4, cosine
  with 1 warm-up epoch, --cifar-epochs epochs; full balanced test set (10,000), evaluated
  once, after the last epoch (CIFAR has no validation split: nothing is selected).
  Skipped with a message when the tarball is absent.

CE and LDA of one dataset run as two parallel processes (1 thread each). Each run
is a plain ``python -m lda_cls.train`` whose results.json is read back; the table
is printed and written to <out>/table.md.
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARBALL = REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
METHODS = ("ce", "lda")


def run_pair(dataset: str, out: Path, extra_args, opts):
    """Train CE and LDA side by side; return {method: results.json dict}."""
    procs = {}
    for method in METHODS:
        output_dir = out / f"{dataset}_{method}"
        log = open(out / f"{dataset}_{method}.stdout", "w")
        cmd = [sys.executable, "-m", "lda_cls.train", "--dataset", dataset, "--method", method,
               "--output-dir", str(output_dir), "--overwrite", *extra_args, *opts]  # a re-run replaces its runs
        print(" ".join(cmd), flush=True)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs[method] = (subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    results = {}
    for method, (proc, log) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{dataset} {method} failed; see {log.name}")
        log.close()
        with open(out / f"{dataset}_{method}" / "results.json") as handle:
            results[method] = json.load(handle)
    return results


def fmt(value):
    return "-" if value is None else f"{value:.2f}"


def table(dataset: str, schedule: str, results) -> str:
    ce, lda = results["ce"], results["lda"]
    splits = [s for s in ("many", "medium", "few") if ce["balanced"][s] is not None]
    lines = [f"### {dataset} (IR {ce['imbalance_ratio']:g}, {ce['num_train_images']} train / "
             f"{ce['num_test_images']} test images; classes per split {ce['split_classes']})",
             f"schedule: {schedule}",
             f"model selection: {ce['model_selection']}; reported epoch CE {ce['selected_epoch']}, "
             f"LDA {lda['selected_epoch']}", "",
             "| method | top-1 | " + " | ".join(splits) + " |",
             "|---|---|" + "---|" * len(splits)]
    rows = [("CE", ce["balanced"]), ("LDA (h)", lda["balanced"]), ("LDA (h', unbalanced)", lda["unbalanced"])]
    for name, metrics in rows:
        lines.append(f"| {name} | {fmt(metrics['top1'])} | " + " | ".join(fmt(metrics[s]) for s in splits) + " |")
    gain = lda["balanced"]["top1"] - ce["balanced"]["top1"]
    lines += ["", f"LDA - CE overall top-1: {gain:+.2f} points", ""]
    return "\n".join(lines)


def prepare_cifar(root: Path) -> bool:
    if (root / "train").is_dir() and (root / "test").is_dir():
        return True
    if not TARBALL.is_file():
        print(f"SKIP cifar10_lt: {TARBALL} not found (the real-image benchmark needs it)")
        return False
    root.mkdir(parents=True, exist_ok=True)
    print(f"extracting {TARBALL} -> {root}", flush=True)
    with tarfile.open(TARBALL) as archive:
        archive.extractall(root)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/bench_cls")
    parser.add_argument("--cifar-root", default="/tmp/cifar10")
    parser.add_argument("--cifar-epochs", type=int, default=12)
    parser.add_argument("--only", choices=("digits", "cifar"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    if args.only in (None, "digits"):
        start = time.time()
        results = run_pair("digits_lt", out, [], [])
        sections.append(table("digits_lt", "resnet8_cifar, 30 epochs, batch 64, lr 0.05 cosine, 1 warm-up epoch "
                              f"(embedded defaults); wall {time.time() - start:.0f}s", results))
        print(sections[-1], flush=True)
    if args.only in (None, "cifar") and prepare_cifar(Path(args.cifar_root)):
        start = time.time()
        opts = ["SOLVER.EPOCHS", str(args.cifar_epochs), "SOLVER.SCHEDULER", "cosine", "SOLVER.WARMUP_EPOCHS", "1",
                "TEST.EVAL_PERIOD", str(args.cifar_epochs), "NUM_THREADS", "1",
                "DATASET.CACHE_DIR", str(out / "cache")]
        results = run_pair("cifar10_lt", out, ["--data-root", args.cifar_root], opts)
        sections.append(table("cifar10_lt", f"resnet32_cifar, {args.cifar_epochs} epochs, batch 128, lr 0.1 cosine, "
                              f"1 warm-up epoch, wd 2e-4, evaluated after the last epoch; wall "
                              f"{time.time() - start:.0f}s (2 parallel 1-thread processes on a shared 2-core CPU)",
                              results))
        print(sections[-1], flush=True)
    text = "\n".join(sections)
    (out / "table.md").write_text(text + "\n")
    print(f"written {out / 'table.md'}")


if __name__ == "__main__":
    main()
