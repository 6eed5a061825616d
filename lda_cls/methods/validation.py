"""The validation split that tau-normalisation chooses tau on: never the test split.

A dataset with its own validation split (ImageNet-LT, Places-LT, or any whose run has a
``val_set`` that is not its ``test_set``) uses it. Any other fails, naming the way out.

Why no validation split is carved for CIFAR-LT: the long-tail profile keeps every training
image of the head class (n_max = 5,000 of 5,000), so no held-out image of that class exists,
and images the stage-1 model trained on would bias the choice towards the head. A
single-value DECOUPLE.TAU_GRID fixes tau without any choice (the CIFAR benchmark's tau = 1).
"""

__all__ = ["validation_set"]


def validation_set(cfg, context):
    """(dataset, description) of the run's validation split (``context.val_set``), or a ValueError."""
    val_set = context.val_set
    if val_set is not None and val_set is not context.test_set:
        return val_set, f"the {cfg.DATASET.NAME} validation split ({len(val_set)} images)"
    raise ValueError(f"METHOD {cfg.METHOD} chooses tau on a validation split, and {cfg.DATASET.NAME} has none "
                     f"(its 'val' is the test split); choosing on test is not allowed. Use a dataset with a "
                     f"validation split, or fix tau without a choice: DECOUPLE.TAU_GRID \"[1.0]\"")
