"""Compared methods (lda_cls/methods) on one long-tailed dataset over seeds: same data, backbone and schedule.

    python benchmarks/bench_methods.py [--methods ce,balanced_softmax,lda] [--seeds 0 1 2] [--epochs 20]
                                       [--stage2-epochs 4] [--imbalance-ratio 100] [--jobs 2] [--threads 1]
                                       [--results-dir benchmarks/results/<tag>] [--work-dir /tmp/bench_methods]
                                       [--curves lda,balanced_softmax] [--dataset cifar10_lt] [--paper-schedule]
                                       [--data-root DIR] [--opts KEY VALUE ...]

Default: long-tailed CIFAR-10 (IR 100, 12,406 training images) built from the real JPEGs of
../shared/data/cifar10-jpg.tar.gz (--tarball; extracted once to --cifar-root, decoded once into a uint8
cache), ResNet-32, the dataset config's optimiser (batch 128, SGD lr 0.1, wd 2e-4), SOLVER.AMP bf16
(fp32 where the CPU has no native bf16; lda_cls/precision.py), and one schedule for every method:
--epochs epochs, cosine, 1 warm-up epoch, the deferred switches (DRW, DRS) at 0.8 x --epochs
(Cao et al.: 160 of 200), reported at the last epoch (the test split selects nothing). Two-stage
methods (cRT, LWS: --stage2-epochs; tau-norm, NCM, post-hoc LA: none) start from the CE run of the
same seed. tau-norm uses tau = 1: CIFAR-LT has no validation split to choose it on.
``--paper-schedule`` keeps every method's own config (200 epochs, DRW at 160, cRT 10 epochs).

Results are data: every finished run writes <results-dir>/<method>_seed<k>.json (method, seed, IR,
epochs, commit, top-1 / many / medium / few of h and of h' where there is one, wall time, threads,
precision); those files are committed, and a run whose file exists is skipped, so the benchmark can
span several sessions (an interrupted run continues from its last_checkpoint.pth under --work-dir).
benchmarks/results_table.py turns the files into the README's tables. Runs of --curves methods at the
first seed evaluate on test after every epoch (a learning curve for lda_cls.analyze; the reported
figure is still the last epoch's).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import yaml

REPO = Path(__file__).resolve().parent.parent
# ../shared/data next to the checkout, or shared/data inside it (the device machine's copy).
TARBALLS = (REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz", REPO / "shared" / "data" / "cifar10-jpg.tar.gz")
sys.path.insert(0, str(REPO))

from lda_cls.methods import METHODS  # noqa: E402  (the repository on the path first)
from lda_cls.methods.decoupling import TwoStageMethod  # noqa: E402
from lda_common.atomic_files import atomic_write_text  # noqa: E402

DATASETS_WITHOUT_VAL = ("cifar10_lt", "cifar100_lt")
# The decision table's methods: the literature's reference points and LDA with its variants.
DECISION_METHODS = ("ce", "balanced_softmax", "lda", "ldam_drw", "crt", "lda_la", "lda_la_fixed_alpha",
                    "balanced_softmax_dm")


def is_two_stage(method: str) -> bool:
    return issubclass(METHODS[method], TwoStageMethod)


def trains(method: str) -> bool:
    return not is_two_stage(method) or METHODS[method].trains


def defers_reweighting(method: str) -> bool:
    """Whether the method's own config (configs/cls/methods/<method>.yaml) switches its class weights on
    after epoch 0 (DRW): then the shared schedule moves that switch with the epochs."""
    from lda_cls.config import get_cfg
    from lda_cls.train import METHOD_CONFIG_DIR

    cfg = get_cfg()
    cfg.merge_from_file(str(METHOD_CONFIG_DIR / f"{method}.yaml"))
    return cfg.REWEIGHT.TYPE != "none" and cfg.REWEIGHT.START_EPOCH > 0


def run_order(methods) -> list:
    """One-stage methods first (the CE stage 1 of the two-stage ones among them), in the order given."""
    return [m for m in methods if not is_two_stage(m)] + [m for m in methods if is_two_stage(m)]


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


def schedule_opts(method: str, seed: int, args, curve: bool) -> list:
    """KEY VALUE overrides of one run: the shared schedule, or none beyond the paper's configs."""
    opts = ["SEED", str(seed), "NUM_THREADS", str(args.threads)]
    if args.imbalance_ratio is not None:
        opts += ["DATASET.IMBALANCE_RATIO", str(float(args.imbalance_ratio))]
    if args.dataset in DATASETS_WITHOUT_VAL and method == "tau_norm":
        opts += ["DECOUPLE.TAU_GRID", "[1.0]"]
    if args.paper_schedule or not trains(method):
        return opts
    epochs = args.stage2_epochs if is_two_stage(method) else args.epochs
    switch = deferred_epoch(epochs)
    opts += ["SOLVER.EPOCHS", str(epochs), "SOLVER.SCHEDULER", "cosine", "TEST.EVAL_PERIOD", "1" if curve else str(epochs),
             "REWEIGHT.START_EPOCH", str(switch) if defers_reweighting(method) else "0",
             "SAMPLER.DEFERRED_EPOCH", str(switch)]
    opts += ["SOLVER.WARMUP_EPOCHS", "0" if is_two_stage(method) else str(warmup_epochs(epochs))]
    return opts


def configured_imbalance_ratio(dataset: str) -> float:
    from lda_cls.config import get_cfg
    from lda_cls.train import CONFIG_DIR

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG_DIR / f"{dataset}.yaml"))
    return float(cfg.DATASET.IMBALANCE_RATIO)


def results_tag(args) -> str:
    ratio = f"{args.imbalance_ratio if args.imbalance_ratio is not None else configured_imbalance_ratio(args.dataset):g}"
    schedule = "paper" if args.paper_schedule else f"e{args.epochs}"
    return f"{args.dataset}_ir{ratio}_{schedule}"


def git_commit() -> str:
    """HEAD, with "-dirty" when tracked files differ from it (the run's code is then not exactly HEAD)."""
    try:
        head = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO, text=True).strip()
        dirty = subprocess.call(["git", "diff", "--quiet", "HEAD", "--", "lda_core", "lda_cls", "configs"], cwd=REPO)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def run_record(method: str, seed: int, args, result: dict, wall_time: Optional[float], command: list,
               commit: str) -> dict:
    """The small file a finished run leaves in the results directory."""
    def figures(metrics):
        return None if metrics is None else {k: metrics[k] for k in ("top1", "many", "medium", "few")}

    output_dir = Path(result["_output_dir"])
    log = output_dir / "log.txt"
    epochs = yaml.safe_load((output_dir / "config.yaml").read_text())["SOLVER"]["EPOCHS"]
    precision = next((line.split("precision: ", 1)[1].strip() for line in log.read_text().splitlines()
                      if "precision: " in line), "unknown") if log.is_file() else "unknown"
    return {
        "method": method, "seed": seed, "dataset": result["dataset"],
        "imbalance_ratio": result["imbalance_ratio"], "backbone": result["backbone"],
        "epochs": epochs, "stage1_epochs": args.epochs if is_two_stage(method) and not args.paper_schedule else None,
        "schedule": "paper" if args.paper_schedule else "cosine, 1 warm-up epoch, batch 128, final epoch",
        "top1": result["balanced"]["top1"], "balanced": figures(result["balanced"]),
        "h_prime": figures(result.get("unbalanced")),
        "selected_epoch": result["selected_epoch"], "model_selection": result["model_selection"],
        "num_train_images": result["num_train_images"], "num_test_images": result["num_test_images"],
        "commit": commit, "wall_time_s": None if wall_time is None else round(wall_time, 1),
        "resumed": bool(result.get("_resumed")),
        "threads": args.threads, "jobs": args.jobs,
        "precision": precision, "host": platform.machine(), "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "command": " ".join(command[1:]),
    }


class Runner:
    def __init__(self, args, work: Path, results_dir: Path, data_args: list, curves: set):
        self.args, self.work, self.results_dir, self.data_args, self.curves = args, work, results_dir, data_args, curves
        self.first_seed = args.seeds[0]
        self.stage1_locks = {seed: threading.Lock() for seed in args.seeds}
        self.commit = git_commit()  # the code every run of this invocation imports (read once, at the start)

    def result_path(self, method: str, seed: int) -> Path:
        return self.results_dir / f"{method}_seed{seed}.json"

    def train(self, method: str, seed: int, weights: str = None) -> tuple:
        """Train (or continue) one run under the work dir; (its results.json, wall seconds, command)."""
        output_dir = self.work / f"{method}_seed{seed}"
        results_path = output_dir / "results.json"
        command = [sys.executable, "-m", "lda_cls.train", "--dataset", self.args.dataset, "--method", method,
                   "--output-dir", str(output_dir), *self.data_args]
        if weights:
            command += ["--weights", weights]
        if results_path.is_file():  # finished under an earlier bench process: its time was not measured here
            return json.loads(results_path.read_text()), None, command
        resumed = (output_dir / "last_checkpoint.pth").is_file()
        if resumed:
            command.append("--resume")  # an interrupted run: continue it (wall_time_s then counts this part only)
        elif output_dir.exists():
            shutil.rmtree(output_dir)  # a run that failed before its first checkpoint: start it again
        curve = method in self.curves and seed == self.first_seed
        # KEY VALUE pairs last: lda_cls.train reads everything after the first one as overrides.
        command += (["DATASET.CACHE_DIR", str(self.work / "cache")] + schedule_opts(method, seed, self.args, curve)
                    + list(self.args.opts))
        print(" ".join(command), flush=True)
        start = time.time()
        stdout = self.work / f"{method}_seed{seed}.stdout"
        with open(stdout, "a") as log:
            env = dict(os.environ, OMP_NUM_THREADS=str(self.args.threads), PYTHONPATH=str(REPO))
            status = subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        if status != 0 or not results_path.is_file():
            raise RuntimeError(f"{method} seed {seed} failed (exit status {status}); see {stdout}")
        result = {**json.loads(results_path.read_text()), "_output_dir": str(output_dir), "_resumed": resumed}
        return result, time.time() - start, command

    def stage1_weights(self, seed: int) -> str:
        """The CE run of ``seed``: trained here if this work dir has none (e.g. its result is from another session)."""
        with self.stage1_locks[seed]:
            self.train("ce", seed)
        return str(self.work / f"ce_seed{seed}" / "model_best.pth")

    def run(self, method: str, seed: int) -> None:
        path = self.result_path(method, seed)
        if path.is_file():
            print(f"skip {method} seed {seed}: {path} exists", flush=True)
            return
        if method == "ce":
            with self.stage1_locks[seed]:
                result, seconds, command = self.train(method, seed)
        else:
            weights = self.stage1_weights(seed) if is_two_stage(method) else None
            result, seconds, command = self.train(method, seed, weights)
        result.setdefault("_output_dir", str(self.work / f"{method}_seed{seed}"))
        record = run_record(method, seed, self.args, result, seconds, command, self.commit)
        atomic_write_text(str(path), json.dumps(record, indent=2) + "\n")
        print(f"{method} seed {seed}: top-1 {record['top1']:.2f} ({seconds:.0f}s) -> {path}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(DECISION_METHODS),
                        help="comma-separated, or 'all' (every registered method); default: the decision table's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", default="cifar10_lt")
    parser.add_argument("--imbalance-ratio", type=float,
                        help="DATASET.IMBALANCE_RATIO (default: the dataset config's; 100 for CIFAR-LT)")
    parser.add_argument("--data-root", help="DATASET.ROOT (default: --cifar-root for cifar10_lt)")
    parser.add_argument("--cifar-root", default="/tmp/cifar10", help="where the CIFAR-10 JPEG tarball is extracted")
    parser.add_argument("--tarball", help="cifar10-jpg.tar.gz (default: ../shared/data/ or shared/data/)")
    parser.add_argument("--epochs", type=int, default=20, help="one-stage methods and stage 1 (CE)")
    parser.add_argument("--stage2-epochs", type=int, default=4,
                        help="cRT and LWS (Kang et al.: 10 of 90 epochs; 4 so that stage 2 sees ~50k samples)")
    parser.add_argument("--paper-schedule", action="store_true",
                        help="each method's own config (no schedule overrides): the GPU runs")
    parser.add_argument("--results-dir", help="default: benchmarks/results/<dataset>_ir<IR>_e<epochs>")
    parser.add_argument("--work-dir", default="/tmp/bench_methods", help="run directories (checkpoints, logs)")
    parser.add_argument("--curves", default="lda,balanced_softmax",
                        help="methods whose first-seed run is evaluated after every epoch")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="overrides for every run")
    args = parser.parse_args()
    if len(args.opts) % 2:
        parser.error(f"--opts must be KEY VALUE pairs, got {args.opts}")
    methods = tuple(METHODS) if args.methods == "all" else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; registered: {', '.join(sorted(METHODS))}")
    tag = results_tag(args)
    results_dir = Path(args.results_dir or REPO / "benchmarks" / "results" / tag).resolve()
    work = (Path(args.work_dir) / tag).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    data_root = args.data_root
    if data_root is None and args.dataset == "cifar10_lt":
        prepare_cifar10(Path(args.cifar_root), args.tarball)
        data_root = args.cifar_root
    data_args = ["--data-root", str(data_root)] if data_root else []  # flags: before any KEY VALUE pair
    curves = {m.strip() for m in args.curves.split(",") if m.strip()}
    runner = Runner(args, work, results_dir, data_args, curves)

    # Seed by seed, so that a complete first-seed table exists early; stage 1 before stage 2 within a seed.
    tasks = [(method, seed) for seed in args.seeds for method in run_order(methods)]
    print(f"{len(tasks)} runs -> {results_dir} (work dir {work})", flush=True)
    failures = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [(task, pool.submit(runner.run, *task)) for task in tasks]
        for (method, seed), future in futures:
            try:
                future.result()
            except RuntimeError as error:
                failures.append(str(error))
                print(error, file=sys.stderr, flush=True)
    if failures:
        raise SystemExit(f"{len(failures)} of {len(tasks)} runs failed:\n" + "\n".join(failures))
    print(f"all {len(tasks)} runs in {results_dir}; tables: python benchmarks/results_table.py", flush=True)


if __name__ == "__main__":
    main()
