"""Package discovery only; metadata and dependencies are in setup.cfg.

`lda_det` lives in projects/LDA/ (detectron2's project layout) and is mapped
into the import namespace here, with its subpackages.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["lda_core", "lda_core.*", "lda_cls", "lda_cls.*"])
    + find_packages("projects/LDA", include=["lda_det", "lda_det.*"]),
    package_dir={"lda_det": "projects/LDA/lda_det"},
    # The LVIS v1 class counts table (lda_det/data/lvis_v1_counts.py) ships with the package.
    package_data={"lda_det": ["data/*.csv"]},
)
