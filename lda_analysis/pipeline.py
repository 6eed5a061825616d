"""From runs to figures: compute every quantity, draw each figure, write report.html and analysis.json."""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from lda_common.atomic_files import atomic_write_json

from . import figures, metrics
from .history import eval_curve, training_curve
from .report import Section, Table, write_report
from .run_data import RunData

# Files written into the output directory, in report order.
FIGURE_FILES = {
    "weight_norms": "weight_norms.png",
    "tsne": "classifier_tsne.png",
    "per_class_accuracy": "per_class_accuracy.png",
    "intra_inter": "intra_inter_distance.png",
    "discrepancy": "train_test_discrepancy.png",
    "training_curves": "alpha_delta_acc.png",
    "balance_vs_accuracy": "balance_vs_accuracy.png",
    "error_flow": "tail_to_head_confusion.png",
}


def _check_same_classes(runs: Sequence[RunData]) -> None:
    reference = runs[0]
    for run in runs[1:]:
        if run.num_classes != reference.num_classes or not np.array_equal(run.class_counts, reference.class_counts):
            raise ValueError(f"run {run.name} was trained on different class counts than {reference.name} "
                             f"({run.num_classes} vs {reference.num_classes} classes): runs compared in one "
                             f"report must share the training set")


def compute_quantities(runs: Sequence[RunData], cdd_max_per_class: Optional[int] = None, seed: int = 0,
                       tsne: bool = True) -> Dict[str, dict]:
    """Every number behind the figures, keyed by quantity then by series name."""
    _check_same_classes(runs)
    main = runs[0]
    cdd_max_per_class = metrics.samples_per_class(main.num_classes, cdd_max_per_class)
    counts, rule = main.class_counts, main.split_rule
    quantities: Dict[str, dict] = {key: {} for key in FIGURE_FILES}
    for run in runs:
        roles = ["h", "h'"] if run is main else ["h"]
        for role in roles:
            if role in run.classifiers:
                label = run.classifier_label(role)
                quantities["weight_norms"][label] = metrics.weight_norms(run.classifiers[role])
                if tsne and run.num_classes >= 3:
                    quantities["tsne"][label] = metrics.tsne_embedding(run.classifiers[role], seed=seed)

        accuracy_series = [(run.classifier_label("h"), run.test_predictions)]
        if run is main and run.test_unbalanced_predictions is not None:
            accuracy_series.append((run.classifier_label("h'"), run.test_unbalanced_predictions))
        for label, predictions in accuracy_series:
            confusion = metrics.confusion_matrix(run.test_targets, predictions, run.num_classes)
            per_class = metrics.per_class_accuracy(confusion)
            quantities["per_class_accuracy"][label] = {
                "per_class": per_class, "splits": metrics.split_means(per_class, counts, rule)}
            quantities["error_flow"][label] = metrics.error_flow(confusion, counts, rule)

        quantities["intra_inter"][run.name] = metrics.intra_inter_distance(run.test_features, run.test_targets)
        # CDD sums kernels over all pairs: subsample each class of both sets (fixed seed) to bound the cost.
        train_keep = metrics.subsample_per_class(run.train_targets, cdd_max_per_class, seed)
        test_keep = metrics.subsample_per_class(run.test_targets, cdd_max_per_class, seed)
        quantities["discrepancy"][run.name] = metrics.contrastive_domain_discrepancy(
            run.train_features[train_keep], run.train_targets[train_keep],
            run.test_features[test_keep], run.test_targets[test_keep], num_classes=run.num_classes)
        quantities["training_curves"][run.name] = training_curve(run.records)
        quantities["balance_vs_accuracy"][run.name] = eval_curve(run.records)
    return quantities


def draw_figures(runs: Sequence[RunData], quantities: Dict[str, dict], out_dir: str) -> List[Section]:
    """One PNG per quantity in ``out_dir``; returns the report sections."""
    main = runs[0]
    counts, names, rule = main.class_counts, main.class_names, main.split_rule
    path = {key: os.path.join(out_dir, name) for key, name in FIGURE_FILES.items()}
    accuracy = quantities["per_class_accuracy"]
    sections = [
        Section("Classifier weight norms (paper Fig. 4a)", path["weight_norms"],
                "L2 norm of each class's weight vector, classes sorted by training frequency. With plain "
                "cross entropy head classes tend to get larger norms (paper Fig. 4a); a balanced h should be flatter.",
                figures.plot_weight_norms(quantities["weight_norms"], counts, names, path["weight_norms"], rule)),
    ]
    if quantities["tsne"]:
        sections.append(Section(
            "t-SNE of the classifier weights (paper Fig. 1)", path["tsne"],
            "scikit-learn t-SNE (PCA init, seed 0, perplexity min(30, (C-1)/3)) of each classifier's weight "
            "vectors, coloured by the class's split; marker area grows with log(training images).",
            figures.plot_tsne(quantities["tsne"], counts, names, path["tsne"], rule)))
    sections += [
        Section("Per-class accuracy vs training frequency", path["per_class_accuracy"],
                "Top-1 of each class on the balanced test set against its training images; dashed segments "
                "are the many / medium / few means (means over classes, as in the paper's tables).",
                figures.plot_per_class_accuracy({k: v["per_class"] for k, v in accuracy.items()},
                                                {k: v["splits"] for k, v in accuracy.items()}, counts, names,
                                                path["per_class_accuracy"], rule)),
        Section("Intra- / inter-class distance of test features (paper Sec. 3.4, Fig. 4c)",
                path["intra_inter"],
                "d_intra: mean over classes of the mean cosine distance 1 - cos(f, mu_c) of a test feature "
                "to its class mean; d_inter: mean cosine distance between the means of two different classes. "
                "A lower ratio means tighter, better separated classes.",
                figures.plot_intra_inter(quantities["intra_inter"], counts, path["intra_inter"], rule)),
        Section("Contrastive domain discrepancy, train vs test features (Kang et al. 2019; paper Fig. 4b)",
                path["discrepancy"],
                "Class-conditional squared MMD between training (long-tailed) and test (balanced) features "
                "with a mean of 5 Gaussian kernels, squared bandwidths {1/4, 1/2, 1, 2, 4} x the mean squared "
                "distance between pooled features (listed per run in the table). intra: same class, "
                "inter: different classes, CDD = intra - inter. A fixed-seed subsample of each class enters "
                "(see the note at the top).",
                figures.plot_discrepancy(quantities["discrepancy"], counts, path["discrepancy"], rule)),
        Section("alpha and delta acc over training (paper Fig. 6b)", path["training_curves"],
                "From metrics.jsonl: the balance factor alpha of Eq. 6 and the windowed accuracy gap between "
                "the unbalanced classifier h' and the balanced classifier h.",
                figures.plot_training_curves(quantities["training_curves"], path["training_curves"])),
        Section("The balanced risk's weight against test accuracy per epoch", path["balance_vs_accuracy"],
                "Top: the effective coefficient of the normalised balanced risk E_{p_s}[N / (C n_y) CE(h)] in each "
                "LDA run's loss (balanced_factor x alpha, x B / N under the official scaling), from metrics.jsonl; "
                "a single-objective method such as Balanced Softmax has none (its balanced loss weighs 1 throughout). "
                "Bottom: top-1 of h at every evaluation of each run (runs evaluated only at the end show one point). "
                "A coefficient that falls as delta acc shrinks is the self-annealing of Eq. 6.",
                figures.plot_balance_vs_accuracy(quantities["training_curves"], quantities["balance_vs_accuracy"],
                                                 path["balance_vs_accuracy"])),
        Section("Tail-to-head confusion", path["error_flow"],
                "For the misclassified test images of each split's classes, the share predicted as a many-, "
                "medium- or few-shot class. The 'few' row's 'to many' share is the confusion of tail classes "
                "into head classes (a split without training classes has no bar).",
                figures.plot_error_flow(quantities["error_flow"], path["error_flow"], rule)),
    ]
    return sections


def summary_table(runs: Sequence[RunData], quantities: Dict[str, dict]) -> Table:
    """One row per run: test top-1 overall and per split of h, d_intra/d_inter, CDD, tail-to-head share."""
    table = Table(["run", "method", "top-1 %", "many %", "medium %", "few %", "d_intra/d_inter", "CDD intra",
                   "CDD", "few errors -> many %", "medium errors -> many %"])
    for run in runs:
        label = run.classifier_label("h")
        splits = quantities["per_class_accuracy"][label]["splits"]
        flow = quantities["error_flow"][label]
        table.rows.append([run.name, run.method, splits["all"], splits["many"], splits["medium"], splits["few"],
                           quantities["intra_inter"][run.name]["ratio"],
                           quantities["discrepancy"][run.name]["intra"],
                           quantities["discrepancy"][run.name]["cdd"],
                           100 * flow["few"]["many"], 100 * flow["medium"]["many"]])
    return table


def analyze_runs(runs: Sequence[RunData], out_dir: str, cdd_max_per_class: Optional[int] = None, seed: int = 0,
                 tsne: bool = True, title: Optional[str] = None) -> Dict[str, object]:
    """Write the PNGs, ``analysis.json`` and ``report.html`` for ``runs`` (the first is the main run)."""
    if not runs:
        raise ValueError("no run to analyze")
    os.makedirs(out_dir, exist_ok=True)
    cdd_max_per_class = metrics.samples_per_class(runs[0].num_classes, cdd_max_per_class)
    quantities = compute_quantities(runs, cdd_max_per_class=cdd_max_per_class, seed=seed, tsne=tsne)
    sections = draw_figures(runs, quantities, out_dir)
    summary = summary_table(runs, quantities)
    notes = [f"Classes: {runs[0].num_classes}, training images: {int(runs[0].class_counts.sum())}, "
             f"imbalance ratio {runs[0].class_counts.max() / max(runs[0].class_counts.min(), 1):.0f}; "
             f"many > {runs[0].split_rule.many_above}, medium {runs[0].split_rule.few_below}-"
             f"{runs[0].split_rule.many_above}, few < {runs[0].split_rule.few_below} training images.",
             f"CDD uses at most {cdd_max_per_class} images per class from each set (seed {seed})."]
    report_path = write_report(os.path.join(out_dir, "report.html"),
                               title or f"LDA analysis: {', '.join(run.name for run in runs)}",
                               sections, summary, notes)
    numbers = {"runs": [run.name for run in runs], "summary": summary.as_dicts(),
               "figures": {os.path.basename(s.image_path): s.table.as_dicts() for s in sections},
               "quantities": quantities}
    json_path = os.path.join(out_dir, "analysis.json")
    atomic_write_json(json_path, numbers, indent=1)
    return {"report": report_path, "json": json_path, "figures": [s.image_path for s in sections],
            "summary": summary}
