"""What the analysis needs from one run, as plain arrays (no model, no data loader)."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .splits import STANDARD_SPLITS, SplitRule


@dataclass
class RunData:
    """Everything one run contributes to the figures.

    Attributes:
        name: label of the run in legends and tables (its directory name).
        method: the run's METHOD ("lda", "ce", "crt", ...; lda_cls/methods).
        class_counts: training images per class (C,).
        class_names: a name per class.
        classifiers: weight matrices (C, D) by role: "h" (balanced, the test-time
            classifier; for every method but LDA the only one, as it predicts: tau-normalised,
            LWS-scaled, NCM class means) and, for LDA, "h'" (unbalanced).
        test_targets, test_predictions: labels and argmax of h on the balanced test set.
        test_features: pooled backbone features (or projections) of the test set.
        train_targets, train_features: the same for (a subsample of) the training set,
            taken with the test-time transform.
        test_unbalanced_predictions: argmax of h' on the test set (LDA only).
        records: the parsed ``metrics.jsonl``.
        results: the parsed ``results.json`` (empty if absent).
        source: where the arrays came from (checkpoint, options); a cache is reused only if it matches.
        split_rule: the many / medium / few thresholds of the run (its TEST.*_THRESHOLD keys).
    """

    name: str
    method: str
    class_counts: np.ndarray
    class_names: List[str]
    classifiers: Dict[str, np.ndarray]
    test_targets: np.ndarray
    test_predictions: np.ndarray
    test_features: np.ndarray
    train_targets: np.ndarray
    train_features: np.ndarray
    test_unbalanced_predictions: Optional[np.ndarray] = None
    records: List[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    split_rule: SplitRule = STANDARD_SPLITS

    def __post_init__(self):
        self.class_counts = np.asarray(self.class_counts, dtype=np.int64)
        num_classes = self.class_counts.size
        if len(self.class_names) != num_classes:
            raise ValueError(f"run {self.name}: {len(self.class_names)} class names for {num_classes} classes")
        if "h" not in self.classifiers:
            raise ValueError(f"run {self.name}: the test-time classifier 'h' is missing")
        for role, weight in self.classifiers.items():
            if np.ndim(weight) != 2 or np.shape(weight)[0] != num_classes:
                raise ValueError(f"run {self.name}: classifier {role} has shape {np.shape(weight)}, "
                                 f"expected ({num_classes}, D)")
        pairs = [("test_predictions", self.test_predictions), ("test_features", self.test_features)]
        if self.test_unbalanced_predictions is not None:
            pairs.append(("test_unbalanced_predictions", self.test_unbalanced_predictions))
        for key, values in pairs:
            if len(values) != len(self.test_targets):
                raise ValueError(f"run {self.name}: {key} has {len(values)} rows for "
                                 f"{len(self.test_targets)} test targets")
        if len(self.train_features) != len(self.train_targets):
            raise ValueError(f"run {self.name}: train_features has {len(self.train_features)} rows for "
                             f"{len(self.train_targets)} train targets")

    @property
    def num_classes(self) -> int:
        return int(self.class_counts.size)

    def classifier_label(self, role: str) -> str:
        if self.method == "ce":
            return f"{self.name}: CE classifier"
        if "h'" not in self.classifiers:  # every compared method but LDA has one classifier
            return f"{self.name}: {self.method} classifier"
        return {"h": f"{self.name}: h (balanced)", "h'": f"{self.name}: h' (unbalanced)"}.get(
            role, f"{self.name}: {role}")

    def save(self, path: str) -> None:
        """Cache as a compressed ``.npz`` (arrays) so re-drawing skips the forward passes."""
        import json

        arrays = {f"classifier/{role}": weight for role, weight in self.classifiers.items()}
        for key in ("class_counts", "test_targets", "test_predictions", "test_features", "train_targets",
                    "train_features"):
            arrays[key] = getattr(self, key)
        if self.test_unbalanced_predictions is not None:
            arrays["test_unbalanced_predictions"] = self.test_unbalanced_predictions
        meta = {"name": self.name, "method": self.method, "class_names": list(self.class_names),
                "source": self.source}
        np.savez_compressed(path, meta=np.asarray(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str, records: Sequence[dict] = (), results: Optional[dict] = None) -> "RunData":
        import json

        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            classifiers = {key.split("/", 1)[1]: stored[key] for key in stored.files
                           if key.startswith("classifier/")}
            return cls(name=meta["name"], method=meta["method"], class_names=meta["class_names"],
                       class_counts=stored["class_counts"], classifiers=classifiers,
                       test_targets=stored["test_targets"], test_predictions=stored["test_predictions"],
                       test_features=stored["test_features"], train_targets=stored["train_targets"],
                       train_features=stored["train_features"],
                       test_unbalanced_predictions=(stored["test_unbalanced_predictions"]
                                                    if "test_unbalanced_predictions" in stored.files else None),
                       records=list(records), results=dict(results or {}), source=meta.get("source", {}))
