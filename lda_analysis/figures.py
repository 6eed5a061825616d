"""The analysis figures, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Every function takes plain arrays keyed by a series name, writes one PNG and
returns the :class:`~lda_analysis.report.Table` of the numbers it drew.
Class axes are sorted by training frequency; many / medium / few regions are
shaded with the same colours in every figure.
"""
import math
from typing import Dict, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .metrics import frequency_order
from .splits import SPLITS, STANDARD_SPLITS, SplitRule, class_splits
from .report import Table

SPLIT_COLOURS = {"many": "#c6dbef", "medium": "#fdd0a2", "few": "#fcbba1"}
POINT_COLOURS = {"many": "#2171b5", "medium": "#e6550d", "few": "#cb181d"}
DPI = 130


def _series_colours(names: Sequence[str]) -> Dict[str, str]:
    palette = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#666666", "#e6ab02"]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _save(figure: Figure, path: str, rect=(0, 0, 1, 1)) -> None:
    figure.tight_layout(rect=rect)
    figure.savefig(path, dpi=DPI)


def _shade_ranks(axes, splits_in_rank_order: np.ndarray, rule: SplitRule) -> list:
    """Shade contiguous runs of each split along a class-rank x axis; returns legend handles."""
    used = []
    start = 0
    for rank in range(1, len(splits_in_rank_order) + 1):
        if rank == len(splits_in_rank_order) or splits_in_rank_order[rank] != splits_in_rank_order[start]:
            split = splits_in_rank_order[start]
            axes.axvspan(start - 0.5, rank - 0.5, color=SPLIT_COLOURS[split], alpha=0.6, lw=0, zorder=0)
            if split not in used:
                used.append(split)
            start = rank
    return [Patch(color=SPLIT_COLOURS[s], alpha=0.6, label=rule.label(s)) for s in SPLITS if s in used]


def _shade_counts(axes, class_counts: np.ndarray, rule: SplitRule) -> list:
    """Shade the many / medium / few ranges of a (log) training-count x axis; returns legend handles."""
    low, high = max(float(class_counts.min()), 1.0) / 1.5, float(class_counts.max()) * 1.5
    bounds = {"few": (low, rule.few_below - 0.5), "medium": (rule.few_below - 0.5, rule.many_above + 0.5),
              "many": (rule.many_above + 0.5, high)}
    present = set(class_splits(class_counts, rule))
    handles = []
    for split in SPLITS:
        left, right = bounds[split]
        left, right = max(left, low), min(right, high)
        if split in present and right > left:
            axes.axvspan(left, right, color=SPLIT_COLOURS[split], alpha=0.6, lw=0, zorder=0)
            handles.append(Patch(color=SPLIT_COLOURS[split], alpha=0.6, label=rule.label(split)))
    axes.set_xscale("log")
    axes.set_xlim(low, high)
    return handles


def _per_class_table(class_counts: np.ndarray, class_names: Sequence[str], order: np.ndarray,
                     columns: Mapping[str, np.ndarray], rule: SplitRule) -> Table:
    splits = class_splits(class_counts, rule)
    table = Table(["rank", "class", "train images", "split"] + list(columns))
    for rank, index in enumerate(order):
        table.rows.append([rank, class_names[index], int(class_counts[index]), splits[index]]
                          + [float(values[index]) for values in columns.values()])
    return table


def plot_weight_norms(norms: Mapping[str, np.ndarray], class_counts, class_names: Sequence[str],
                      path: str, rule: SplitRule = STANDARD_SPLITS) -> Table:
    """L2 norm of each classifier's weight vector per class, classes by training frequency (Fig. 4a)."""
    class_counts = np.asarray(class_counts)
    order = frequency_order(class_counts)
    colours = _series_colours(list(norms))
    figure = Figure(figsize=(9, 4.5))
    axes = figure.add_subplot(1, 1, 1)
    handles = _shade_ranks(axes, class_splits(class_counts, rule)[order], rule)
    ranks = np.arange(len(order))
    for name, values in norms.items():
        axes.plot(ranks, np.asarray(values)[order], marker="o" if len(order) <= 100 else None,
                  ms=3 if len(order) > 30 else 5, lw=1.5 if len(order) <= 100 else 0.8,
                  color=colours[name], label=name, zorder=3)
    axes.set_xlabel(f"class, sorted by {rule.unit} (rank, 0 = most frequent)")
    axes.set_ylabel("classifier weight L2 norm (unitless)")
    axes.set_xlim(-0.5, len(order) - 0.5)
    axes.set_title("Classifier weight norm per class")
    if len(order) <= 20:
        axes.set_xticks(ranks)
        axes.set_xticklabels([f"{class_names[i]}\n{int(class_counts[i])}" for i in order], fontsize=7)
        axes.set_xlabel(f"class ({rule.unit}), sorted by training frequency")
    axes.legend(handles=axes.get_legend_handles_labels()[0] + handles, fontsize=8, loc="best")
    axes.grid(alpha=0.3, zorder=1)
    _save(figure, path)
    return _per_class_table(class_counts, class_names, order, {f"norm {k}": v for k, v in norms.items()}, rule)


def plot_tsne(embeddings: Mapping[str, np.ndarray], class_counts, class_names: Sequence[str],
              path: str, rule: SplitRule = STANDARD_SPLITS) -> Table:
    """t-SNE of the classifier weight vectors, one panel per classifier, coloured by split (Fig. 1)."""
    class_counts = np.asarray(class_counts)
    splits = class_splits(class_counts, rule)
    panels = len(embeddings)
    figure = Figure(figsize=(4.6 * panels, 5.0))
    # Marker area grows with log(train images), so head classes stand out.
    sizes = 15 + 25 * np.log10(np.maximum(class_counts, 1))
    for panel, (name, points) in enumerate(embeddings.items()):
        axes = figure.add_subplot(1, panels, panel + 1)
        for split in SPLITS:
            chosen = splits == split
            if chosen.any():
                axes.scatter(points[chosen, 0], points[chosen, 1], s=sizes[chosen], c=POINT_COLOURS[split],
                             label=rule.label(split), alpha=0.8, edgecolors="k", linewidths=0.3)
        if len(class_counts) <= 20:
            for index, (x, y) in enumerate(points):
                axes.annotate(str(class_names[index]), (x, y), fontsize=7, xytext=(3, 3),
                              textcoords="offset points")
        axes.set_title(name, fontsize=10)
        axes.set_xlabel("t-SNE dimension 1 (arbitrary units)")
        axes.set_ylabel("t-SNE dimension 2 (arbitrary units)")
        axes.margins(0.12)  # room for the class names at the edges
    # One legend below the panels, where it cannot hide a point.
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8,
                  title=f"marker area ~ log({rule.unit})", title_fontsize=8)
    _save(figure, path, rect=(0, 0.12, 1, 1))
    order = frequency_order(class_counts)
    columns = {}
    for name, points in embeddings.items():
        columns[f"{name} x"] = points[:, 0]
        columns[f"{name} y"] = points[:, 1]
    return _per_class_table(class_counts, class_names, order, columns, rule)


def plot_per_class_metric(values: Mapping[str, np.ndarray], split_means: Mapping[str, Mapping[str, float]],
                          class_counts, class_names: Sequence[str], path: str, ylabel: str, title: str,
                          column: str, rule: SplitRule = STANDARD_SPLITS) -> Table:
    """A per-class score (%) against training frequency, runs overlaid, split means as dashed segments.

    Up to 100 classes each run is a line through its classes (sorted by count);
    beyond that (LVIS: 1203) a cloud of small dots, where the split means carry the message.
    """
    class_counts = np.asarray(class_counts)
    order = frequency_order(class_counts)
    colours = _series_colours(list(values))
    figure = Figure(figsize=(9, 4.8))
    axes = figure.add_subplot(1, 1, 1)
    handles = _shade_counts(axes, class_counts, rule)
    splits = class_splits(class_counts, rule)
    dense = len(order) > 100
    for name, series in values.items():
        series = np.asarray(series)
        label = f"{name} (mean {split_means[name]['all']:.1f}%)"
        if dense:
            # Jitter the counts a little so classes with equal counts do not hide each other.
            jitter = np.exp(np.random.default_rng(0).uniform(-0.08, 0.08, len(order)))
            axes.scatter(class_counts * jitter, series, s=6, alpha=0.45, color=colours[name], label=label,
                         zorder=3, lw=0)
        else:
            axes.plot(class_counts[order], series[order], marker="o", ms=4, lw=1, alpha=0.85,
                      color=colours[name], zorder=3, label=label)
        for split in SPLITS:  # the split average drawn across the counts it covers
            chosen = splits == split
            if chosen.any() and not np.isnan(split_means[name][split]):
                axes.hlines(split_means[name][split], class_counts[chosen].min() / 1.15,
                            class_counts[chosen].max() * 1.15, colors=colours[name], linestyles="--", lw=2,
                            zorder=4)
    axes.set_xlabel(f"{rule.unit} of the class (log scale)")
    axes.set_ylabel(ylabel)
    lowest = np.nanmin([np.nanmin(np.asarray(v, dtype=np.float64)) for v in values.values()])
    # Zoom in when every class scores high, so differences of a few points stay visible.
    axes.set_ylim(max(-2.0, 10 * np.floor((lowest - 5) / 10)) if np.isfinite(lowest) else -2.0, 102)
    axes.set_title(title)
    axes.legend(handles=axes.get_legend_handles_labels()[0] + handles, fontsize=8, loc="best")
    axes.grid(alpha=0.3, zorder=1)
    _save(figure, path)
    table = _per_class_table(class_counts, class_names, order,
                             {f"{column} {name}": series for name, series in values.items()}, rule)
    for split in ("all",) + SPLITS:
        table.rows.append(["mean", split, None, split] + [split_means[name][split] for name in values])
    return table


def plot_per_class_accuracy(accuracies: Mapping[str, np.ndarray], split_means: Mapping[str, Mapping[str, float]],
                            class_counts, class_names: Sequence[str], path: str,
                            rule: SplitRule = STANDARD_SPLITS) -> Table:
    """Test top-1 per class against training images, runs overlaid, split means as dashed segments."""
    names = [rule.names[i].split("-")[0] for i in range(3)]
    return plot_per_class_metric(
        accuracies, split_means, class_counts, class_names, path, ylabel="test top-1 accuracy of the class (%)",
        title=f"Per-class accuracy vs training frequency (dashed: {' / '.join(names)} means)",
        column="top-1 %", rule=rule)


def _grouped_bars(axes, names: Sequence[str], quantities: Sequence[str], values: Mapping[str, Mapping[str, float]],
                  colours: Mapping[str, str]) -> None:
    width = 0.8 / max(len(names), 1)
    positions = np.arange(len(quantities))
    for i, name in enumerate(names):
        heights = [values[name][q] for q in quantities]
        bars = axes.bar(positions + (i - (len(names) - 1) / 2) * width, heights, width, label=name,
                        color=colours[name])
        axes.bar_label(bars, fmt="%.3g", fontsize=7)
    axes.set_xticks(positions)
    axes.axhline(0, color="k", lw=0.8)
    axes.margins(y=0.15)  # room for the bar labels and the legend


def plot_intra_inter(results: Mapping[str, Mapping[str, object]], class_counts, path: str,
                     rule: SplitRule = STANDARD_SPLITS) -> Table:
    """d_intra, d_inter and their ratio of test features per run, and d_intra per class (Fig. 4c)."""
    class_counts = np.asarray(class_counts)
    names = list(results)
    colours = _series_colours(names)
    figure = Figure(figsize=(12, 4.3))
    grid = figure.add_gridspec(1, 3, width_ratios=[2, 1.2, 3])
    bars = figure.add_subplot(grid[0])
    _grouped_bars(bars, names, ("d_intra", "d_inter"), results, colours)
    bars.set_xticklabels(["d_intra\n(1-cos to\nclass mean)", "d_inter\n(1-cos between\nclass means)"], fontsize=8)
    bars.set_ylabel("cosine distance (unitless, 0-2)")
    bars.set_title("Test-feature distances", fontsize=10)
    bars.legend(fontsize=8)
    ratio = figure.add_subplot(grid[1])
    _grouped_bars(ratio, names, ("ratio",), results, colours)
    ratio.set_xticklabels(["d_intra / d_inter"], fontsize=8)
    ratio.set_ylabel("ratio (unitless, lower = more separable)")
    ratio.set_title("Ratio (Fig. 4c)", fontsize=10)
    quantities = ("d_intra", "d_inter", "ratio")
    _plot_per_class_intra(figure.add_subplot(grid[2]), results, class_counts, colours, rule,
                          ylabel="d_intra of the class (cosine distance)", title="Spread of each class's test features")
    _save(figure, path)
    return Table(["run"] + list(quantities), [[name] + [results[name][q] for q in quantities] for name in names])


def _plot_per_class_intra(axes, results, class_counts, colours, rule: SplitRule, ylabel: str, title: str) -> None:
    """Each run's "per_class_intra" against the class's training count, splits shaded."""
    handles = _shade_counts(axes, class_counts, rule)
    order = frequency_order(class_counts)
    for name in results:
        axes.plot(class_counts[order], np.asarray(results[name]["per_class_intra"])[order], marker="o",
                  ms=4, lw=1, color=colours[name], label=name, zorder=3)
    axes.set_xlabel(f"{rule.unit} of the class (log scale)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(handles=axes.get_legend_handles_labels()[0] + handles, fontsize=7)
    axes.grid(alpha=0.3, zorder=1)


def plot_discrepancy(results: Mapping[str, Mapping[str, object]], class_counts, path: str,
                     rule: SplitRule = STANDARD_SPLITS) -> Table:
    """Contrastive domain discrepancy between training and test features per run (Fig. 4b)."""
    class_counts = np.asarray(class_counts)
    names = list(results)
    colours = _series_colours(names)
    figure = Figure(figsize=(11, 4.3))
    bars = figure.add_subplot(1, 2, 1)
    quantities = ("intra", "inter", "cdd")
    _grouped_bars(bars, names, quantities, results, colours)
    bars.set_xticklabels(["intra MMD$^2$\n(train c vs\ntest c)", "inter MMD$^2$\n(train c vs\ntest c' != c)",
                          "CDD =\nintra - inter"], fontsize=8)
    bars.set_ylabel("squared MMD (kernel units, 0-2)")
    bars.set_title("Train (long-tailed) vs test (balanced) features")
    bars.legend(fontsize=8)
    _plot_per_class_intra(figure.add_subplot(1, 2, 2), results, class_counts, colours, rule,
                          ylabel="MMD$^2$ train vs test of the class", title="Per-class train/test discrepancy")
    _save(figure, path)
    return Table(["run"] + list(quantities) + ["bandwidths sigma^2"],
                 [[name] + [results[name][q] for q in quantities]
                  + [", ".join(f"{b:.3g}" for b in results[name]["bandwidths"])] for name in names])


def plot_training_curves(curves: Mapping[str, Mapping[str, np.ndarray]], path: str, x_key: str = "epoch") -> Table:
    """alpha (Eq. 6) and delta acc over training, one line per run that logged them (Fig. 6b).

    Each curve holds "alpha", "delta_acc" and the x values under ``x_key`` ("epoch"
    for lda_cls, "iteration" for detectron2 runs).
    """
    names = [name for name, curve in curves.items() if np.isfinite(curve["delta_acc"]).any()]
    colours = _series_colours(names)
    figure = Figure(figsize=(9, 5.5))
    top = figure.add_subplot(2, 1, 1)
    bottom = figure.add_subplot(2, 1, 2, sharex=top)
    for name in names:
        curve = curves[name]
        marker = "o" if len(curve[x_key]) <= 60 else None  # sparse logs: show where the points are
        top.plot(curve[x_key], curve["alpha"], lw=1.2, color=colours[name], label=name, marker=marker, ms=3)
        bottom.plot(curve[x_key], curve["delta_acc"], lw=1.2, color=colours[name], label=name, marker=marker,
                    ms=3)
    if names and np.nanmax([np.nanmax(curves[n]["alpha"]) for n in names]) > 100:
        top.set_yscale("symlog", linthresh=1.0)  # official alpha = (percent gap)^gamma spans decades
    top.set_ylabel("alpha = max(0, delta acc)^gamma\n(unitless)")
    top.set_title("Balance factor and accuracy gap of h' and h over training")
    bottom.axhline(0, color="k", lw=0.8)
    bottom.set_ylabel("delta acc = acc(h') - acc(h)\n(percentage points)")
    bottom.set_xlabel(x_key)
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
        if names:
            axes.legend(fontsize=8)
    if not names:
        top.text(0.5, 0.5, "no run logged alpha / delta_acc (CE runs have none)", ha="center",
                 transform=top.transAxes)
    _save(figure, path)
    table = Table(["run", x_key, "alpha", "delta acc (pp)"])
    for name in names:  # at most ~50 rows per run: the table summarises, the PNG has every step
        curve = curves[name]
        step = max(1, len(curve[x_key]) // 50)
        for i in range(0, len(curve[x_key]), step):
            table.rows.append([name, float(curve[x_key][i]), float(curve["alpha"][i]),
                               float(curve["delta_acc"][i])])
    return table


def plot_balance_vs_accuracy(training_curves: Mapping[str, Mapping[str, np.ndarray]],
                             accuracy_curves: Mapping[str, Mapping[str, np.ndarray]], path: str) -> Table:
    """The balanced risk's effective coefficient over training (LDA runs) above h's test top-1 per epoch (all runs)."""
    names = list(accuracy_curves)
    colours = _series_colours(names)
    figure = Figure(figsize=(9, 6))
    top = figure.add_subplot(2, 1, 1)
    bottom = figure.add_subplot(2, 1, 2, sharex=top)
    with_coefficient = [n for n in names if np.isfinite(training_curves[n]["balanced_coefficient"]).any()]
    for name in with_coefficient:
        curve = training_curves[name]
        top.plot(curve["epoch"], curve["balanced_coefficient"], lw=1.2, color=colours[name], label=name)
    for name in names:
        curve = accuracy_curves[name]
        bottom.plot(curve["epoch"], curve["balanced"], lw=1.2, color=colours[name], label=f"{name}: h",
                    marker="o", ms=3)
    top.set_ylabel("coefficient of the\nnormalised balanced risk")
    top.set_title("Weight of the balanced objective, and what h reaches on test")
    bottom.set_ylabel("test top-1 of h (%)")
    bottom.set_xlabel("epoch")
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    if with_coefficient:
        top.legend(fontsize=8)
    else:
        top.text(0.5, 0.5, "no run logged balanced_coefficient (only LDA runs do)", ha="center",
                 transform=top.transAxes)
    if names:
        bottom.legend(fontsize=8)
    _save(figure, path)
    table = Table(["run", "epoch", "coefficient (end of epoch)", "test top-1 of h %"])
    for name in names:
        train, evals = training_curves[name], accuracy_curves[name]
        for epoch, top1 in zip(evals["epoch"], evals["balanced"]):
            logged = np.flatnonzero(train["epoch"] <= epoch + 1e-9)
            coefficient = float(train["balanced_coefficient"][logged[-1]]) if logged.size else math.nan
            table.rows.append([name, float(epoch), coefficient, float(top1)])
    return table


def plot_error_flow(flows: Mapping[str, Mapping[str, Mapping[str, float]]], path: str,
                    rule: SplitRule = STANDARD_SPLITS) -> Table:
    """Where the test errors of each split go: stacked shares predicted as many / medium / few."""
    names = list(flows)
    true_splits = [s for s in SPLITS if any(flows[n][s]["errors"] > 0 for n in names)]
    bars = max(1, len(true_splits) * len(names))
    figure = Figure(figsize=(max(7.0, 1.5 * bars + 3.0), 4.6))
    axes = figure.add_subplot(1, 1, 1)
    labels, positions = [], []
    width = 0.8 / max(len(names), 1)
    for group, true_split in enumerate(true_splits):
        for i, name in enumerate(names):
            x = group + (i - (len(names) - 1) / 2) * width
            bottom = 0.0
            for predicted in SPLITS:
                share = flows[name][true_split][predicted]
                share = 0.0 if np.isnan(share) else 100 * share
                axes.bar(x, share, width * 0.95, bottom=bottom, color=POINT_COLOURS[predicted],
                         edgecolor="white", lw=0.5)
                if share >= 6:
                    axes.text(x, bottom + share / 2, f"{share:.0f}", ha="center", va="center", fontsize=7,
                              color="white")
                bottom += share
            positions.append(x)
            labels.append(f"{name.replace(': ', chr(10))}\n({int(flows[name][true_split]['errors'])} errors)")
    axes.set_xticks(positions)
    axes.set_xticklabels(labels, fontsize=7)
    for group, true_split in enumerate(true_splits):
        axes.text(group, 103, f"true class {rule.names[SPLITS.index(true_split)]}", ha="center", fontsize=9)
    axes.set_ylim(0, 110)
    axes.set_ylabel("share of the split's test errors (%)")
    axes.set_title("Predicted split of misclassified test images (tail-to-head confusion)")
    axes.legend(handles=[Patch(color=POINT_COLOURS[s], label=f"predicted as {rule.names[i]}")
                         for i, s in enumerate(SPLITS)],
                fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    _save(figure, path)
    table = Table(["run", "true split", "errors", "% to many", "% to medium", "% to few"])
    for name in names:
        for true_split in SPLITS:
            flow = flows[name][true_split]
            table.rows.append([name, true_split, int(flow["errors"])]
                              + [100 * flow[s] for s in SPLITS])
    return table
