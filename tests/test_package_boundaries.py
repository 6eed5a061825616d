"""Who may import whom: the shared packages know no application, the detection project no classification code."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APPLICATIONS = ("lda_cls", "lda_det", "detectron2", "timm")


def imported_modules(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_the_detection_project_imports_nothing_of_lda_cls():
    offenders = [f"{path.relative_to(REPO)}: {module}" for path in sorted((REPO / "projects").rglob("*.py"))
                 for module in imported_modules(path) if module.split(".")[0] == "lda_cls"]
    assert not offenders, offenders


def test_shared_packages_import_no_application():
    for package in ("lda_core", "lda_common", "lda_analysis"):
        offenders = [f"{path.relative_to(REPO)}: {module}" for path in sorted((REPO / package).rglob("*.py"))
                     for module in imported_modules(path) if module.split(".")[0] in APPLICATIONS]
        assert not offenders, offenders


def test_training_imports_the_split_rule_without_matplotlib():
    """lda_cls.data takes its many / medium / few rule from lda_analysis, which must not load the figures."""
    code = "import sys, lda_cls.data; print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
