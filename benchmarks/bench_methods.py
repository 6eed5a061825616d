"""Every compared method (lda_cls/methods) on one long-tailed dataset, same data, backbone, schedule and seed.

    python benchmarks/bench_methods.py [--out /tmp/bench_methods] [--epochs 12] [--stage2-epochs 2]
                                       [--limit-methods ce,ldam_drw,crt] [--jobs 1] [--threads 1]
                                       [--dataset cifar10_lt] [--imbalance-ratio 100] [--paper-schedule]
                                       [--data-root DIR] [--opts KEY VALUE ...]

Default: long-tailed CIFAR-10 (IR 100, 12,406 training images) built from the real JPEGs of
../shared/data/cifar10-jpg.tar.gz (--tarball; extracted once to --cifar-root, decoded once into a uint8
cache under --out), ResNet-32, the dataset config's optimiser (batch 128, SGD lr 0.1, wd 2e-4),
and one CPU-sized schedule for every method: --epochs epochs, cosine, 1 warm-up epoch, the
deferred switches (DRW, DRS) at 0.8 x --epochs (Cao et al.: 160 of 200), evaluated once, after
the last epoch (the test split is not used to select a checkpoint). Two-stage methods (cRT,
LWS: --stage2-epochs epochs; tau-norm, NCM, post-hoc LA: none) start from the CE run's
model_best.pth. tau-norm uses tau = 1: CIFAR-LT has no validation split to choose it on.
``--paper-schedule`` keeps every method's own config (200 epochs, DRW at 160, cRT 10 epochs):
benchmarks/gpu_methods.sh uses it.

One process per method (``python -m lda_cls.train``), --jobs at a time; a method whose
<out>/<method>/results.json exists is skipped (resumable; an interrupted run continues from its
last_checkpoint.pth). After each method, <out>/results.json (every method's results.json) and
<out>/table.md (top-1 / many / medium / few) are rewritten, and the table is printed.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# ../shared/data next to the checkout, or shared/data inside it (the device machine's copy).
TARBALLS = (REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz", REPO / "shared" / "data" / "cifar10-jpg.tar.gz")
sys.path.insert(0, str(REPO))

from lda_cls.methods import METHODS  # noqa: E402  (the repository on the path first)

# Run order: the stage-1 CE first (two-stage methods need its checkpoint), LDA, then the baselines.
ONE_STAGE = ("ce", "lda", "rw", "focal", "cb_focal", "ldam", "ldam_drw", "ce_drw", "ce_drs", "balanced_softmax",
             "logit_adjusted", "lda_em_only", "lda_em_dm", "lda_h_prime_only", "lda_fixed_alpha")
TWO_STAGE = ("crt", "lws", "tau_norm", "ncm", "posthoc_la")
TRAINING_FREE = ("tau_norm", "ncm", "posthoc_la")
DATASETS_WITHOUT_VAL = ("cifar10_lt", "cifar100_lt")
assert set(ONE_STAGE + TWO_STAGE) == set(METHODS), "a registered method is missing from the benchmark"


def prepare_cifar10(root: Path, tarball) -> None:
    if (root / "train").is_dir() and (root / "test").is_dir():
        return
    candidates = [Path(tarball)] if tarball else list(TARBALLS)
    found = [path for path in candidates if path.is_file()]
    if not found:
        raise SystemExit(f"cifar10-jpg.tar.gz not found at {', '.join(map(str, candidates))}: the CIFAR-10-LT "
                         f"benchmark needs the real JPEGs (--tarball, or an extracted tree as --data-root)")
    root.mkdir(parents=True, exist_ok=True)
    print(f"extracting {found[0]} -> {root}", flush=True)
    with tarfile.open(found[0]) as archive:
        archive.extractall(root)


def deferred_epoch(epochs: int) -> int:
    """Cao et al.'s 160 of 200, scaled; a 1-epoch smoke run switches at once."""
    return max(0, min(epochs - 1, int(round(0.8 * epochs))))


def warmup_epochs(epochs: int) -> int:
    # From lr 0.1 without warm-up, ResNet-32 collapses to the head class in a 1-epoch run (10.0 top-1).
    return 1 if epochs >= 2 else 0


def schedule_opts(method: str, args) -> list:
    """KEY VALUE overrides of ``method``: the shared CPU schedule, or none beyond the paper's configs."""
    opts = ["SEED", "0", "NUM_THREADS", str(args.threads)]
    if args.imbalance_ratio is not None:
        opts += ["DATASET.IMBALANCE_RATIO", str(float(args.imbalance_ratio))]
    if args.dataset in DATASETS_WITHOUT_VAL and method == "tau_norm":
        opts += ["DECOUPLE.TAU_GRID", "[1.0]"]
    if args.paper_schedule:
        return opts
    if method in TRAINING_FREE:
        return opts
    epochs = args.stage2_epochs if method in TWO_STAGE else args.epochs
    switch = deferred_epoch(epochs)
    opts += ["SOLVER.EPOCHS", str(epochs), "SOLVER.SCHEDULER", "cosine", "TEST.EVAL_PERIOD", str(epochs),
             "REWEIGHT.START_EPOCH", str(switch) if method.endswith("_drw") else "0",
             "SAMPLER.DEFERRED_EPOCH", str(switch)]
    opts += ["SOLVER.WARMUP_EPOCHS", "0" if method in TWO_STAGE else str(warmup_epochs(epochs))]
    return opts


def run_method(method: str, args, out: Path, data_args: list) -> dict:
    output_dir = out / method
    results_path = output_dir / "results.json"
    if results_path.is_file():
        print(f"skip {method}: {results_path} exists", flush=True)
        return json.loads(results_path.read_text())
    command = [sys.executable, "-m", "lda_cls.train", "--dataset", args.dataset, "--method", method,
               "--output-dir", str(output_dir), *data_args]
    if method in TWO_STAGE:
        command += ["--weights", str(out / "ce" / "model_best.pth")]
    if (output_dir / "last_checkpoint.pth").is_file():
        command.append("--resume")  # an interrupted run of this method: continue it
    elif output_dir.exists():
        shutil.rmtree(output_dir)  # a run that failed before its first checkpoint: start it again
    # KEY VALUE pairs last: lda_cls.train reads everything after the first one as overrides.
    command += ["DATASET.CACHE_DIR", str(out / "cache")] + schedule_opts(method, args) + list(args.opts)
    print(" ".join(command), flush=True)
    start = time.time()
    with open(out / f"{method}.stdout", "a") as log:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(REPO))
        status = subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    if status != 0 or not results_path.is_file():
        raise RuntimeError(f"{method} failed (exit status {status}); see {out / (method + '.stdout')}")
    print(f"{method}: {time.time() - start:.0f}s", flush=True)
    return json.loads(results_path.read_text())


def fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(results: dict, args, header: str) -> str:
    lines = [header, "", "| method | config | top-1 | many | medium | few |", "|---|---|---|---|---|---|"]
    for method in ONE_STAGE + TWO_STAGE:
        if method not in results:
            continue
        metrics = results[method]["balanced"]
        lines.append(f"| {method} | configs/cls/methods/{method}.yaml | {fmt(metrics['top1'])} | "
                     f"{fmt(metrics['many'])} | {fmt(metrics['medium'])} | {fmt(metrics['few'])} |")
        if method == "lda" and results[method].get("unbalanced"):
            h_prime = results[method]["unbalanced"]
            lines.append(f"| lda (h', unbalanced) | configs/cls/methods/lda.yaml | {fmt(h_prime['top1'])} | "
                         f"{fmt(h_prime['many'])} | {fmt(h_prime['medium'])} | {fmt(h_prime['few'])} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/bench_methods")
    parser.add_argument("--dataset", default="cifar10_lt")
    parser.add_argument("--imbalance-ratio", type=float,
                        help="DATASET.IMBALANCE_RATIO (default: the dataset config's; 100 for CIFAR-LT)")
    parser.add_argument("--data-root", help="DATASET.ROOT (default: --cifar-root for cifar10_lt)")
    parser.add_argument("--cifar-root", default="/tmp/cifar10", help="where the CIFAR-10 JPEG tarball is extracted")
    parser.add_argument("--tarball", help="cifar10-jpg.tar.gz (default: ../shared/data/ or shared/data/)")
    parser.add_argument("--epochs", type=int, default=12, help="one-stage methods and stage 1 (CE)")
    parser.add_argument("--stage2-epochs", type=int, default=2, help="cRT and LWS (Kang et al.: 10 of 90 epochs)")
    parser.add_argument("--paper-schedule", action="store_true",
                        help="each method's own config (no schedule overrides): the GPU runs")
    parser.add_argument("--limit-methods", help="comma-separated subset, e.g. ce,ldam_drw,crt")
    parser.add_argument("--jobs", type=int, default=1, help="methods trained at the same time")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="overrides for every run")
    args = parser.parse_args()
    if len(args.opts) % 2:
        parser.error(f"--opts must be KEY VALUE pairs, got {args.opts}")
    methods = ONE_STAGE + TWO_STAGE
    if args.limit_methods:
        methods = tuple(m.strip() for m in args.limit_methods.split(",") if m.strip())
        unknown = sorted(set(methods) - set(ONE_STAGE + TWO_STAGE))
        if unknown:
            parser.error(f"unknown methods {unknown}; known: {', '.join(ONE_STAGE + TWO_STAGE)}")
        if any(m in TWO_STAGE for m in methods) and "ce" not in methods:
            methods = ("ce",) + methods  # the stage-1 run of the two-stage methods
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_root = args.data_root
    if data_root is None and args.dataset == "cifar10_lt":
        prepare_cifar10(Path(args.cifar_root), args.tarball)
        data_root = args.cifar_root
    data_args = ["--data-root", str(data_root)] if data_root else []  # flags: before any KEY VALUE pair

    schedule = ("each method's paper schedule (configs/cls/<dataset>.yaml + configs/cls/methods/<method>.yaml)"
                if args.paper_schedule else
                f"{args.epochs} epochs (two-stage: {args.stage2_epochs}), cosine, {warmup_epochs(args.epochs)} warm-up "
                f"epoch(s), DRW/DRS from epoch {deferred_epoch(args.epochs)} (0-based), evaluated after the last epoch")
    ratio = "the config's IR" if args.imbalance_ratio is None else f"IR {args.imbalance_ratio:g}"
    header = (f"### {args.dataset}, {ratio}: {schedule}; seed 0; "
              f"{time.strftime('%Y-%m-%d', time.gmtime())}")
    results = {}
    lock = threading.Lock()

    def record(method: str) -> None:
        result = run_method(method, args, out, data_args)
        with lock:  # several methods may finish at once (--jobs)
            write_outputs(method, result)

    def write_outputs(method: str, result: dict) -> None:
        results[method] = result
        ordered = {m: results[m] for m in ONE_STAGE + TWO_STAGE if m in results}
        (out / "results.json").write_text(json.dumps(ordered, indent=2) + "\n")
        text = table(ordered, args, header)
        (out / "table.md").write_text(text)
        print(text, flush=True)

    # Stage 1 and the one-stage methods, then the two-stage ones (which need ce's checkpoint).
    for phase in ([m for m in methods if m in ONE_STAGE], [m for m in methods if m in TWO_STAGE]):
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(record, phase))  # re-raises the first failure
    print(f"written {out / 'table.md'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
