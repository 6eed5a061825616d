"""Package discovery and package data; metadata and dependencies are in setup.cfg.

Top-level packages: lda_core (the loss), lda_common (command lines and files, shared), lda_analysis
(figures and metrics, shared), lda_cls (classification) and lda_det (detection).

`lda_det` lives in projects/LDA/ (detectron2's project layout) and is mapped
into the import namespace here, with its subpackages.

The YAML configs stay in the repository's configs/ (one source of truth). As
detectron2 ships its configs as `detectron2.model_zoo/configs`, the build maps
configs/ into the installed packages, each taking its own sub-directory:
    configs/cls/*.yaml       -> lda_cls/configs/cls/*.yaml
    configs/LVIS-LDA/*.yaml  -> lda_det/configs/LVIS-LDA/*.yaml
(a `package_dir` mapping rather than detectron2's symlink, so building writes
nothing into the source tree). `lda_cls.config.configs_root()` and
`lda_det.model_zoo.CONFIGS_ROOT` read them there, or from configs/ in a checkout.
"""
from setuptools import find_packages, setup

CONFIG_PACKAGES = {"lda_cls.configs": ["cls/*.yaml", "cls/methods/*.yaml"], "lda_det.configs": ["LVIS-LDA/*.yaml"]}

setup(
    packages=find_packages(include=["lda_core", "lda_core.*", "lda_common", "lda_common.*", "lda_analysis",
                                    "lda_analysis.*", "lda_cls", "lda_cls.*"])
    + find_packages("projects/LDA", include=["lda_det", "lda_det.*"])
    + list(CONFIG_PACKAGES),
    package_dir={"lda_det": "projects/LDA/lda_det", **{name: "configs" for name in CONFIG_PACKAGES}},
    # The LVIS v1 class counts table (lda_det/data/lvis_v1_counts.py) ships with the package.
    package_data={**CONFIG_PACKAGES, "lda_det.data": ["*.csv"]},
)
