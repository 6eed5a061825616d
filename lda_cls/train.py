"""Command line: python -m lda_cls.train [--dataset X] [--config-file F] ... [KEY VALUE ...]

With no arguments it trains LDA on digits_lt (the embedded defaults of lda_cls.config).
``--method NAME`` merges configs/cls/methods/NAME.yaml over the dataset config; two-stage methods
start from a stage-1 run: ``--method crt --weights output/<ce run>/model_best.pth``.
Under ``torchrun --nproc_per_node N -m lda_cls.train ...`` it trains with DDP.
"""
import argparse
import json
import os
from typing import List, Optional

from lda_common.cli import add_debug_flag, run_cli

from .config import configs_root, get_cfg

CONFIG_DIR = configs_root() / "cls"  # the installed package's, or the checkout's configs/cls
METHOD_CONFIG_DIR = CONFIG_DIR / "methods"
DATASETS = ("digits_lt", "cifar10_lt", "cifar100_lt", "imagenet_lt", "places_lt", "imagefolder_lt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Long-tailed classification with LDA (or the CE baseline)",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--dataset", choices=DATASETS, help="picks configs/cls/<dataset>.yaml")
    parser.add_argument("--config-file", help="YAML config (overrides the one --dataset picks)")
    parser.add_argument("--data-root", help="sets DATASET.ROOT")
    parser.add_argument("--output-dir", help="sets OUTPUT_DIR (default output/<dataset>_<method>)")
    parser.add_argument("--method", help="sets METHOD and merges configs/cls/methods/<method>.yaml "
                                         "(lda, ce, ldam_drw, crt, ...; see README 'Compared methods')")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint.pth")
    parser.add_argument("--auto-resume", action="store_true",
                        help="--resume if OUTPUT_DIR has a last_checkpoint.pth, else start afresh (also over a run "
                             "killed before its first checkpoint): the one command torchrun --max-restarts re-runs")
    parser.add_argument("--allow-world-size-change", action="store_true",
                        help="--resume under another number of processes than the checkpoint's (the data order and "
                             "BatchNorm statistics then differ from the uninterrupted run; results.json records it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an OUTPUT_DIR that holds an earlier run, deleting that run's files "
                             "(without it, or --resume, such a directory is refused)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate --weights on the test split")
    parser.add_argument("--weights", help="checkpoint for --eval-only (model_best.pth, model_deploy.pth, ...); "
                                          "in training, the stage-1 checkpoint of a two-stage method")
    add_debug_flag(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs overriding config keys")
    return parser


def _promote_ints(cfg, opts: List[str]) -> List[str]:
    """Let `DATASET.IMBALANCE_RATIO 50` set a float key (yacs would reject the int literal)."""
    promoted = list(opts)
    for i in range(0, len(promoted) - 1, 2):
        node = cfg
        for part in promoted[i].split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, float) and not isinstance(node, bool):
            try:
                promoted[i + 1] = repr(float(int(promoted[i + 1])))
            except ValueError:
                pass
    return promoted


def _merge_method_config(cfg, method: str, fail) -> None:
    """configs/cls/methods/<method>.yaml over the dataset config: only what the method changes."""
    path = METHOD_CONFIG_DIR / f"{method}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in METHOD_CONFIG_DIR.glob("*.yaml"))
        fail(f"--method {method}: no {path}; methods with a config: {', '.join(known)}")
    try:
        cfg.merge_from_file(str(path))
    except KeyError as error:
        fail(f"{path}: {error.args[0]}")


def setup_cfg(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None):
    """Defaults <- config file <- command-line flags <- KEY VALUE pairs; frozen."""
    def fail(message: str):
        if parser is not None:
            parser.error(message)
        raise ValueError(message)

    cfg = get_cfg()
    config_file = args.config_file
    if config_file is None and args.dataset is not None:
        candidate = CONFIG_DIR / f"{args.dataset}.yaml"
        if candidate.is_file():
            config_file = str(candidate)
        elif args.dataset != "digits_lt":
            fail(f"no default config for --dataset {args.dataset}: {candidate} is missing; pass --config-file")
    if config_file is not None:
        if not os.path.isfile(config_file):
            fail(f"config file not found: {config_file}")
        try:
            cfg.merge_from_file(config_file)
        except KeyError as error:
            fail(f"{config_file}: {error.args[0]}")
    if args.method is not None:
        _merge_method_config(cfg, args.method, fail)
    if args.dataset is not None:
        cfg.DATASET.NAME = args.dataset
    if args.method is not None:
        cfg.METHOD = args.method
    if getattr(args, "weights", None) and not getattr(args, "eval_only", False):
        cfg.DECOUPLE.STAGE1_WEIGHTS = args.weights
    if args.data_root is not None:
        cfg.DATASET.ROOT = args.data_root
    if args.output_dir is not None:
        cfg.OUTPUT_DIR = args.output_dir
    opts = list(args.opts or [])
    if opts and opts[0] == "--":
        opts = opts[1:]
    flags = [item for item in opts if item.startswith("--")]
    if flags:  # argparse hands everything after the first KEY to the overrides
        fail(f"option {flags[0]} comes after the KEY VALUE pairs: options go before the KEY VALUE pairs, "
             f"e.g. python -m lda_cls.train {flags[0]} ... {' '.join(opts[:2])} ...")
    if len(opts) % 2:
        fail(f"overrides must be KEY VALUE pairs, got an odd number: {opts}")
    try:
        cfg.merge_from_list(_promote_ints(cfg, opts))
    except KeyError as error:
        fail(f"unknown config key in overrides: {error.args[0]}")
    except (ValueError, AssertionError) as error:
        fail(f"bad override value: {error}")
    from .methods import METHODS  # late: --help stays fast

    if cfg.METHOD not in METHODS:
        fail(f"unknown METHOD {cfg.METHOD!r}; registered: {', '.join(sorted(METHODS))}")
    from .data.profile import check_imbalance_ratio

    try:  # here, before the run's directory is touched (build_dataset checks it too, for the API)
        check_imbalance_ratio(cfg.DATASET.IMBALANCE_RATIO)
    except ValueError as error:
        fail(str(error))
    if not cfg.OUTPUT_DIR:
        cfg.OUTPUT_DIR = os.path.join("output", f"{cfg.DATASET.NAME}_{cfg.METHOD}")
    cfg.freeze()
    return cfg


def previous_run_files(output_dir: str) -> List[str]:
    """The files in ``output_dir`` that show an earlier training run (a fresh run would overwrite or mix them)."""
    from .engine import LAST_CHECKPOINT

    return [name for name in (LAST_CHECKPOINT, "results.json", "metrics.jsonl")
            if os.path.isfile(os.path.join(output_dir, name))]


def clear_previous_run(output_dir: str) -> None:
    """Delete what a run of the Trainer writes (--overwrite); other files and the directory itself stay."""
    from .engine import BEST_CHECKPOINT, DEPLOY_WEIGHTS, LAST_CHECKPOINT

    for name in (LAST_CHECKPOINT, BEST_CHECKPOINT, DEPLOY_WEIGHTS, "results.json", "metrics.jsonl",
                 "eval_results.json", "config.yaml", "log.txt"):
        path = os.path.join(output_dir, name)
        if os.path.isfile(path):
            os.remove(path)
    events = os.path.join(output_dir, "tensorboard")
    if os.path.isdir(events):
        for name in os.listdir(events):
            if name.startswith("events.out.tfevents"):
                os.remove(os.path.join(events, name))


def _check_flags(args, parser) -> None:
    if args.eval_only and not args.weights:
        parser.error("--eval-only needs --weights")
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in OUTPUT_DIR, --overwrite deletes it: pass one of them")
    if args.auto_resume and (args.resume or args.overwrite or args.eval_only):
        parser.error("--auto-resume decides between --resume and a fresh start itself: pass it alone")
    if args.allow_world_size_change and not (args.resume or args.auto_resume):
        parser.error("--allow-world-size-change applies to --resume only")


# What a run killed before its first checkpoint leaves: nothing in it can be continued.
UNCHECKPOINTED_RUN_FILES = {"metrics.jsonl"}


def _resolve_auto_resume(args, cfg) -> None:
    """--auto-resume: continue the run in OUTPUT_DIR if it has a checkpoint; else start afresh, replacing
    the files of a run killed before its first checkpoint (a finished run's results.json is never replaced)."""
    from .engine import LAST_CHECKPOINT

    if not args.auto_resume:
        return
    if os.path.isfile(os.path.join(cfg.OUTPUT_DIR, LAST_CHECKPOINT)):
        args.resume = True
    elif set(previous_run_files(cfg.OUTPUT_DIR)) <= UNCHECKPOINTED_RUN_FILES:
        args.overwrite = True


def _output_dir_lock(output_dir: str):
    """The directory's lock (run_dir.run_dir_lock) on the process that writes it: torchrun's rank 0 (the
    other ranks write nothing and wait for it in the process group)."""
    import contextlib

    from .run_dir import run_dir_lock

    return run_dir_lock(output_dir) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext()


def _prepare_fresh_run(args, cfg, parser) -> None:
    """A new training run refuses an earlier run's directory, or deletes that run's files with --overwrite."""
    earlier = previous_run_files(cfg.OUTPUT_DIR)
    if earlier and not args.overwrite:
        parser.error(f"{cfg.OUTPUT_DIR} already holds a run ({', '.join(earlier)}): pass --resume to continue "
                     f"it, --overwrite to replace it, or another --output-dir")
    if earlier and int(os.environ.get("RANK", "0")) == 0:  # before the process group exists
        clear_previous_run(cfg.OUTPUT_DIR)


def _run(args, cfg, parser, removed_temporaries: List[str]):
    from .engine import LAST_CHECKPOINT, Trainer  # imported late so that --help and config errors stay fast
    from .run_dir import environment_world_size, read_resume_checkpoint
    from .utils import collective_failure, is_main_process

    if not args.eval_only and not args.resume:
        _prepare_fresh_run(args, cfg, parser)
    resume_state = None
    if args.resume:  # checked before the Trainer writes anything (log.txt, config.yaml) into the directory
        resume_state = read_resume_checkpoint(os.path.join(cfg.OUTPUT_DIR, LAST_CHECKPOINT), cfg,
                                              environment_world_size(), args.allow_world_size_change)
    # --eval-only logs to stdout only: a training run's log.txt in the same directory stays its own.
    trainer = Trainer(cfg, cfg.OUTPUT_DIR, log_file=None if args.eval_only else "log.txt")
    if removed_temporaries:
        trainer.logger.warning(f"removed temporary files a killed run left in {cfg.OUTPUT_DIR}: "
                               f"{', '.join(removed_temporaries)}")
    try:
        if args.eval_only:
            result = trainer.eval_only(args.weights)
            if is_main_process():
                print(json.dumps(result))
            return result
        return trainer.train(resume=args.resume, resume_state=resume_state,
                             allow_world_size_change=args.allow_world_size_change)
    except RuntimeError as error:
        failed = collective_failure(error, cfg.DIST_TIMEOUT_S)
        if failed is None:
            raise
        trainer.logger.error(str(failed))
        raise failed from error


def main(argv: Optional[List[str]] = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = setup_cfg(args, parser)
    _check_flags(args, parser)
    from .run_dir import remove_stale_temporaries

    # One run per directory: everything below, the check for an earlier run included, holds its lock.
    with _output_dir_lock(cfg.OUTPUT_DIR):
        removed = remove_stale_temporaries(cfg.OUTPUT_DIR) if int(os.environ.get("RANK", "0")) == 0 else []
        _resolve_auto_resume(args, cfg)
        return _run(args, cfg, parser, removed)


if __name__ == "__main__":
    run_cli(main)  # a mistake (or a diverged run) is one line "error: ...", exit status 1
