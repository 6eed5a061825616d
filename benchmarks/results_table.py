"""The README's benchmark tables, generated from the per-run result files of benchmarks/bench_methods.py.

    python benchmarks/results_table.py [RESULTS_DIR ...]            print the tables (default: benchmarks/results/*)
    python benchmarks/results_table.py --write-readme README.md     replace each generated block in README.md
    python benchmarks/results_table.py --check-readme README.md     exit 1 if a block differs from the files

A results directory holds one <method>_seed<k>.json per finished run. Its table gives, per method, the
number of seeds and mean ± sample standard deviation over them of the final-epoch top-1 and of the
many / medium / few-shot accuracies (h, the test-time classifier), and h' top-1 where the method has one.
Below it, the instrument check: whether each of the literature's orderings over CE holds at this
schedule (Balanced Softmax: Ren et al. 2020; LDAM-DRW: Cao et al. 2019; cRT: Kang et al. 2020) and
whether the difference is resolved (larger than twice the larger of the two standard deviations).

In README.md a block is the text between ``<!-- results: DIR -->`` and ``<!-- /results -->`` (DIR relative
to the repository), or between ``<!-- ranking: DIR_A DIR_B -->`` and ``<!-- /ranking -->``: the methods both
directories hold, compared on the seeds both hold (e.g. a schedule and a longer run of it), with their
ranking in each and whether it is the same. --write-readme regenerates every block and touches nothing else.
"""
import argparse
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- (?P<kind>results|ranking): (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- /(?P=kind) -->)",
                   re.S)
# (method, what it is compared with, source) for the instrument check.
ORDERINGS = (("balanced_softmax", "ce", "Ren et al. 2020"), ("ldam_drw", "ce", "Cao et al. 2019"),
             ("crt", "ce", "Kang et al. 2020"))
REFERENCE_ORDER = ("ce", "balanced_softmax", "ldam_drw", "crt", "lda")


def load_runs(results_dir: Path) -> dict:
    """method -> list of run records, sorted by seed; a malformed file is an error naming it."""
    runs = defaultdict(list)
    for path in sorted(results_dir.glob("*_seed*.json")):
        try:
            record = json.loads(path.read_text())
            runs[record["method"]].append(record)
        except (json.JSONDecodeError, KeyError) as error:
            raise SystemExit(f"{path}: not a bench_methods result file ({type(error).__name__}: {error})")
    return {method: sorted(records, key=lambda r: r["seed"]) for method, records in runs.items()}


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt(mean, std) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def summary(records) -> dict:
    def column(getter):
        return mean_std([getter(r) for r in records])

    return {
        "seeds": [r["seed"] for r in records],
        "top1": column(lambda r: r["balanced"]["top1"]),
        "many": column(lambda r: r["balanced"]["many"]),
        "medium": column(lambda r: r["balanced"]["medium"]),
        "few": column(lambda r: r["balanced"]["few"]),
        "h_prime": column(lambda r: (r.get("h_prime") or {}).get("top1")),
        "wall": column(lambda r: r.get("wall_time_s")),
    }


def ordered_methods(runs: dict) -> list:
    first = [m for m in REFERENCE_ORDER if m in runs]
    return first + sorted(m for m in runs if m not in first)


def instrument_check(summaries: dict) -> list:
    lines = []
    for method, baseline, source in ORDERINGS:
        if method not in summaries or baseline not in summaries:
            continue
        (a, sa), (b, sb) = summaries[method]["top1"], summaries[baseline]["top1"]
        difference = a - b
        spread = max(s for s in (sa, sb, 0.0) if s is not None)
        if sa is None or sb is None:
            verdict = "one seed: not resolvable"
        elif abs(difference) > 2 * spread:
            verdict = "resolved"
        else:
            verdict = f"not resolved (|difference| <= 2 x {spread:.2f})"
        holds = "holds" if difference > 0 else "FAILS"
        lines.append(f"- {method} above {baseline} ({source}): {difference:+.2f} points, {holds}; {verdict}")
    return lines


def describe(runs: dict) -> str:
    records = [r for rs in runs.values() for r in rs]
    first = records[0]
    # One-stage runs' epochs, else (two-stage runs only) their stage 1's.
    epochs = (sorted({r["epochs"] for r in records if r.get("stage1_epochs") is None})
              or sorted({r["stage1_epochs"] for r in records}))
    stage2 = sorted({r["epochs"] for r in records if r.get("stage1_epochs") is not None})
    commits = sorted({r["commit"][:7] + ("-dirty" if r["commit"].endswith("-dirty") else "") for r in records})
    precisions = sorted({r.get("precision", "unknown").split(" (")[0] for r in records})
    text = (f"{first['dataset']}, IR {first['imbalance_ratio']:g}, {first['backbone']}, "
            f"{'/'.join(map(str, epochs))} epochs ({first['schedule']})")
    if stage2:
        text += f", stage 2 {'/'.join(map(str, stage2))} epochs"
    return (text + f"; {first['num_train_images']} training / {first['num_test_images']} test images; "
            f"{'; '.join(precisions)}; commits {', '.join(commits)}; runs {min(r['date'] for r in records)} to "
            f"{max(r['date'] for r in records)}.")


def table(results_dir: Path) -> str:
    runs = load_runs(results_dir)
    if not runs:
        return f"(no result files in {relative(results_dir)} yet)\n"
    summaries = {method: summary(records) for method, records in runs.items()}
    lines = [describe(runs), "",
             "| method | seeds | top-1 | many | medium | few | h' top-1 | min / run |",
             "|---|---|---|---|---|---|---|---|"]
    for method in ordered_methods(runs):
        s = summaries[method]
        wall = "-" if s["wall"][0] is None else f"{s['wall'][0] / 60:.0f}"
        lines.append(f"| {method} | {','.join(map(str, s['seeds']))} | {fmt(*s['top1'])} | {fmt(*s['many'])} | "
                     f"{fmt(*s['medium'])} | {fmt(*s['few'])} | {fmt(*s['h_prime'])} | {wall} |")
    check = instrument_check(summaries)
    if check:
        lines += ["", "Instrument check (mean top-1 difference; resolved = larger than twice the larger std):", *check]
    return "\n".join(lines) + "\n"


def ranking(dir_a: Path, dir_b: Path) -> str:
    """The methods of both directories on their common seeds: top-1 in each, rank in each, same order?"""
    runs_a, runs_b = load_runs(dir_a), load_runs(dir_b)
    rows = []
    for method in ordered_methods(runs_a):
        if method not in runs_b:
            continue
        seeds = sorted({r["seed"] for r in runs_a[method]} & {r["seed"] for r in runs_b[method]})
        if seeds:
            top1 = [statistics.fmean(r["balanced"]["top1"] for r in runs[method] if r["seed"] in seeds)
                    for runs in (runs_a, runs_b)]
            rows.append((method, seeds, *top1))
    if len(rows) < 2:
        return f"(fewer than two methods with common seeds in {relative(dir_a)} and {relative(dir_b)} yet)\n"
    epochs = [sorted({r["epochs"] for rs in runs.values() for r in rs if r.get("stage1_epochs") is None})
              for runs in (runs_a, runs_b)]
    order = [sorted(rows, key=lambda row: -row[column]) for column in (2, 3)]
    rank = [{row[0]: position + 1 for position, row in enumerate(rows_in_order)} for rows_in_order in order]
    name_a, name_b = (f"{'/'.join(map(str, e))} epochs" for e in epochs)
    lines = [f"| method | seeds | top-1, {name_a} | top-1, {name_b} | rank, {name_a} | rank, {name_b} |",
             "|---|---|---|---|---|---|"]
    for method, seeds, a, b in rows:
        lines.append(f"| {method} | {','.join(map(str, seeds))} | {a:.2f} | {b:.2f} | {rank[0][method]} | "
                     f"{rank[1][method]} |")
    same = [row[0] for row in order[0]] == [row[0] for row in order[1]]
    lines += ["", f"Ranking ({relative(dir_a)} vs {relative(dir_b)}): "
                  f"{' > '.join(row[0] for row in order[0])} vs {' > '.join(row[0] for row in order[1])}: "
                  f"{'the same' if same else 'DIFFERENT'}."]
    return "\n".join(lines) + "\n"


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def regenerate(readme_text: str) -> str:
    def block(match):
        dirs = [REPO / name for name in match.group("args").split()]
        body = table(*dirs) if match.group("kind") == "results" else ranking(*dirs)
        return match.group(1) + body + match.group(5)

    return BLOCK.sub(block, readme_text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="*", type=Path, help="results directories (default: benchmarks/results/*)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write-readme", type=Path, metavar="README", help="regenerate its results blocks in place")
    group.add_argument("--check-readme", type=Path, metavar="README", help="exit 1 if its blocks are stale")
    args = parser.parse_args(argv)
    readme = args.write_readme or args.check_readme
    if readme:
        text = readme.read_text()
        if not BLOCK.search(text):
            raise SystemExit(f"{readme}: no '<!-- results: DIR -->' ... '<!-- /results -->' block")
        new = regenerate(text)
        if args.check_readme:
            if new != text:
                raise SystemExit(f"{readme}: a results block differs from the result files; "
                                 f"run python benchmarks/results_table.py --write-readme {readme}")
            print(f"{readme}: every results block matches its result files")
            return
        tmp = readme.with_suffix(readme.suffix + ".tmp")
        tmp.write_text(new)
        tmp.replace(readme)
        print(f"{readme}: results blocks regenerated")
        return
    dirs = args.dirs or sorted(p for p in DEFAULT_ROOT.iterdir() if p.is_dir())
    for directory in dirs:
        print(f"### {relative(directory)}\n\n{table(directory)}")


if __name__ == "__main__":
    sys.exit(main())
